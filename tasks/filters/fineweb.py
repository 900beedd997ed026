"""FineWeb quality rules (Penedo et al. 2024, "The FineWeb Datasets", §3.3: rules that
separated good from bad web data in their ablations), one rule per class.

The duplicated-line rule follows the paper's text (fraction of characters in duplicated lines
>= 0.1 removes a page); the paper's appendix table and datatrove's code use 0.01, which
removes clean technical pages that repeat a short line (set 0.01 for datatrove's decisions).
The newline-per-word rule is datatrove's; the paper does not describe it.
"""

from __future__ import annotations

from typing import ClassVar

from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.filters.text import (
    WordTokenizer,
    code_lines_field,
    content_lines,
    duplicates,
    ratio_units,
)
from lmforge.tasks.filters.text import word_tokenizer_field as _tokenizer
from lmforge.tasks.schema import Document
from pydantic import Field

TERMINAL = (".", "!", "?", '"', "'", "”", "’", "…", "。", "！", "？", ")")
_PAPER = "Penedo et al. 2024, §3.3"


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


class FineWebLinePunctuationFilter(DocFilter):
    """At least 12% of lines must end with terminal punctuation."""

    name = "fineweb"

    class Params(RuleParams):
        min_line_punctuation_ratio: float | None = Field(
            0.12, description=f"share of lines ending in terminal punctuation ({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        ls = _lines(doc.text)
        ratio = sum(line.endswith(TERMINAL) for line in ls) / (len(ls) or 1)
        if ratio < self.params.min_line_punctuation_ratio:
            return Verdict.drop("line_punctuation", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class FineWebShortLinesFilter(DocFilter):
    """At most 67% of lines may be short (30 characters or fewer)."""

    name = "fineweb"

    class Params(RuleParams):
        max_short_line_ratio: float | None = Field(
            0.67, description=f"share of short lines ({_PAPER})")
        short_line_length: int = Field(30, ge=1, description=f"a short line has at most this "
                                       f"many characters ({_PAPER})")
        switches: ClassVar[tuple[str, ...]] = ("max_short_line_ratio",)

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        ls = _lines(doc.text)
        ratio = sum(len(line) <= p.short_line_length for line in ls) / (len(ls) or 1)
        if ratio > p.max_short_line_ratio:
            return Verdict.drop("short_lines", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class FineWebDuplicateLineCharsFilter(DocFilter):
    """Repeated lines may hold at most 10% of the characters."""

    name = "fineweb"

    class Params(RuleParams):
        max_duplicate_line_char_ratio: float | None = Field(
            0.1, description=f"characters in repeated lines ({_PAPER} text; datatrove 0.01)")
        ignore_markup_lines: bool = Field(
            True, description="lines without a letter or digit are markup, not repeats")
        ignore_code_lines: bool = code_lines_field()
        switches: ClassVar[tuple[str, ...]] = ("max_duplicate_line_char_ratio",)

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        ls = content_lines(_lines(doc.text), markup=p.ignore_markup_lines,
                           code=p.ignore_code_lines)
        _, chars = duplicates(ls)
        ratio = chars / max(1, len(doc.text.replace("\n", "")))
        if ratio > self.params.max_duplicate_line_char_ratio:
            return Verdict.drop("duplicate_line_chars", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class FineWebListRatioFilter(DocFilter):
    """At most 0.3 newlines per word: lists and menus, not prose (datatrove's rule)."""

    name = "fineweb"

    class Params(RuleParams):
        max_newline_ratio: float | None = Field(
            0.3, description="newlines per word (datatrove's FineWebQualityFilter)")
        word_tokenizer: WordTokenizer = _tokenizer()
        switches: ClassVar[tuple[str, ...]] = ("max_newline_ratio",)

    def keep(self, doc: Document) -> Verdict:
        ratio = doc.text.count("\n") / max(1, len(ratio_units(doc.text,
                                                              self.params.word_tokenizer)))
        if ratio > self.params.max_newline_ratio:
            return Verdict.drop("list_ratio", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


RULES = [FineWebLinePunctuationFilter, FineWebShortLinesFilter,
         FineWebDuplicateLineCharsFilter, FineWebListRatioFilter]
