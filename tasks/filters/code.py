"""Source-code rules of The Stack / StarCoder (Li et al. 2023, "StarCoder: may the source be with
you!", §3: files with mean line length > 100, max line length > 1000, or an alphanumeric fraction
below 0.25 are removed), plus data-file detection, one rule per class. ``None`` disables a side.
(Auto-generated files are recognised by their markers in the code reader.)"""

from __future__ import annotations

import re

from tasks.base import DocFilter, Verdict
from tasks.schema import Document

# a line of literals only: numbers, quoted strings, base64-ish runs, separators
_DATA_LINE = re.compile(r"""[\s\d.,;:\[\]{}()+\-eE"'xXa-fA-F]*|[A-Za-z0-9+/=]{40,}""")


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
        return Verdict.ok(max_line_length=longest, mean_line_length=round(mean, 2))


class CodeAlphanumFilter(DocFilter):
    """Files that are mostly symbols (data, encoded blobs) are not code to learn from."""

    name = "code"

    def __init__(self, *, min_fraction: float = 0.25) -> None:
        self.min_fraction = min_fraction

    def keep(self, doc: Document) -> Verdict:
        fraction = sum(c.isalnum() for c in doc.text) / (len(doc.text) or 1)
        if fraction < self.min_fraction:
            return Verdict.drop("low_alphanumeric_fraction", fraction=round(fraction, 4))
        return Verdict.ok(fraction=round(fraction, 4))


class CodeDataFileFilter(DocFilter):
    """Source files that are mostly data literals (number tables, base64 blobs, embedded JSON)
    teach little code: at most ``max_ratio`` of the lines may be data-only."""

    name = "code"

    def __init__(self, *, max_ratio: float = 0.5, min_lines: int = 20) -> None:
        self.max_ratio, self.min_lines = max_ratio, min_lines

    def keep(self, doc: Document) -> Verdict:
        lines = [line.strip() for line in doc.text.splitlines() if line.strip()]
        if len(lines) < self.min_lines:
            return Verdict.ok(lines=len(lines))
        data = sum(bool(_DATA_LINE.fullmatch(line)) for line in lines) / len(lines)
        if data > self.max_ratio:
            return Verdict.drop("data_file", data_line_ratio=round(data, 4))
        return Verdict.ok(data_line_ratio=round(data, 4))
