"""Source-code rules of The Stack / StarCoder (Li et al. 2023, "StarCoder: may the source be with
you!", §3: files with mean line length > 100, max line length > 1000, or an alphanumeric fraction
below 0.25 are removed), one rule per class. ``None`` disables a side."""

from __future__ import annotations

from tasks.base import KEEP, DocFilter, Verdict
from tasks.schema import Document


class CodeLineLengthFilter(DocFilter):
    """Long lines mark minified code and embedded data."""

    name = "code"

    def __init__(self, *, max_line_length: int | None = 1000,
                 max_mean_line_length: float | None = 100) -> None:
        self.max_line_length, self.max_mean_line_length = max_line_length, max_mean_line_length

    def keep(self, doc: Document) -> Verdict:
        lengths = [len(line) for line in doc.text.splitlines()] or [0]
        longest, mean = max(lengths), sum(lengths) / len(lengths)
        if self.max_line_length is not None and longest > self.max_line_length:
            return Verdict.drop("long_line", max_line_length=longest)
        if self.max_mean_line_length is not None and mean > self.max_mean_line_length:
            return Verdict.drop("long_mean_line", mean_line_length=round(mean, 2))
        return KEEP


class CodeAlphanumFilter(DocFilter):
    """Files that are mostly symbols (data, encoded blobs) are not code to learn from."""

    name = "code"

    def __init__(self, *, min_fraction: float = 0.25) -> None:
        self.min_fraction = min_fraction

    def keep(self, doc: Document) -> Verdict:
        fraction = sum(c.isalnum() for c in doc.text) / (len(doc.text) or 1)
        if fraction < self.min_fraction:
            return Verdict.drop("low_alphanumeric_fraction", fraction=round(fraction, 4))
        return KEEP
