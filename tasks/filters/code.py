"""Source-code rules of The Stack / StarCoder (Li et al. 2023, "StarCoder: may the source be with
you!", §3: files with mean line length > 100, max line length > 1000, or an alphanumeric fraction
below 0.25 are removed), plus data-file detection, one rule per class. ``None`` disables a side.
(Auto-generated files are recognised by their markers in the code reader.)"""

from __future__ import annotations

import re
from typing import ClassVar

from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.schema import Document
from pydantic import Field

_PAPER = "Li et al. 2023 (StarCoder), §3; Chen et al. 2021 (Codex), §3.1"

# a line of literals only: numbers, quoted strings, base64-ish runs, separators
_DATA_LINE = re.compile(r"""[\s\d.,;:\[\]{}()+\-eE"'xXa-fA-F]*|[A-Za-z0-9+/=]{40,}""")


class CodeLineLengthFilter(DocFilter):
    """Long lines mark minified code and embedded data."""

    name = "code"

    class Params(RuleParams):
        max_line_length: int | None = Field(1000, description=f"longest line ({_PAPER})")
        max_mean_line_length: float | None = Field(100, description=f"largest mean line length "
                                                   f"({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        lengths = [len(line) for line in doc.text.splitlines()] or [0]
        longest, mean = max(lengths), sum(lengths) / len(lengths)
        p = self.params
        if p.max_line_length is not None and longest > p.max_line_length:
            return Verdict.drop("long_line", max_line_length=longest)
        if p.max_mean_line_length is not None and mean > p.max_mean_line_length:
            return Verdict.drop("long_mean_line", mean_line_length=round(mean, 2))
        return Verdict.ok(max_line_length=longest, mean_line_length=round(mean, 2))


class CodeAlphanumFilter(DocFilter):
    """Files that are mostly symbols (data, encoded blobs) are not code to learn from."""

    name = "code"

    class Params(RuleParams):
        min_alphanumeric_fraction: float | None = Field(
            0.25, description=f"share of alphanumeric characters ({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        fraction = sum(c.isalnum() for c in doc.text) / (len(doc.text) or 1)
        if fraction < self.params.min_alphanumeric_fraction:
            return Verdict.drop("low_alphanumeric_fraction", fraction=round(fraction, 4))
        return Verdict.ok(fraction=round(fraction, 4))


class CodeDataFileFilter(DocFilter):
    """Source files that are mostly data literals (number tables, base64 blobs, embedded JSON)
    teach little code: at most ``max_ratio`` of the lines may be data-only."""

    name = "code"

    class Params(RuleParams):
        max_data_line_ratio: float | None = Field(0.5, description="share of lines that hold "
                                                  "only literals (lmforge's rule)")
        min_data_lines: int = Field(20, ge=1, description="files with fewer non-empty lines "
                                    "are not judged")
        switches: ClassVar[tuple[str, ...]] = ("max_data_line_ratio",)

    def keep(self, doc: Document) -> Verdict:
        lines = [line.strip() for line in doc.text.splitlines() if line.strip()]
        if len(lines) < self.params.min_data_lines:
            return Verdict.ok(lines=len(lines))
        data = sum(bool(_DATA_LINE.fullmatch(line)) for line in lines) / len(lines)
        if data > self.params.max_data_line_ratio:
            return Verdict.drop("data_file", data_line_ratio=round(data, 4))
        return Verdict.ok(data_line_ratio=round(data, 4))


RULES = [CodeLineLengthFilter, CodeAlphanumFilter, CodeDataFileFilter]
