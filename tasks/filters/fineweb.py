"""FineWeb quality rules (Penedo et al. 2024, "The FineWeb Datasets", §3.3: rules that
separated good from bad web data in their ablations), one rule per class."""

from __future__ import annotations

from tasks.base import DocFilter, Verdict
from tasks.filters.text import duplicates, tokens
from tasks.schema import Document

TERMINAL = (".", "!", "?", '"', "'", "”", "’", "…", "。", "！", "？", ")")


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


class FineWebLinePunctuationFilter(DocFilter):
    """At least 12% of lines must end with terminal punctuation."""

    name = "fineweb"

    def __init__(self, *, min_ratio: float = 0.12) -> None:
        self.min_ratio = min_ratio

    def keep(self, doc: Document) -> Verdict:
        ls = _lines(doc.text)
        ratio = sum(line.endswith(TERMINAL) for line in ls) / (len(ls) or 1)
        if ratio < self.min_ratio:
            return Verdict.drop("line_punctuation", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class FineWebShortLinesFilter(DocFilter):
    """At most 67% of lines may be short (30 characters or fewer)."""

    name = "fineweb"

    def __init__(self, *, max_ratio: float = 0.67, short_length: int = 30) -> None:
        self.max_ratio, self.short_length = max_ratio, short_length

    def keep(self, doc: Document) -> Verdict:
        ls = _lines(doc.text)
        ratio = sum(len(line) <= self.short_length for line in ls) / (len(ls) or 1)
        if ratio > self.max_ratio:
            return Verdict.drop("short_lines", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class FineWebDuplicateLineCharsFilter(DocFilter):
    """Repeated lines may hold at most 1% of the characters."""

    name = "fineweb"

    def __init__(self, *, max_ratio: float = 0.01) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        _, chars = duplicates(tuple(_lines(doc.text)))
        ratio = chars / max(1, len(doc.text.replace("\n", "")))
        if ratio > self.max_ratio:
            return Verdict.drop("duplicate_line_chars", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class FineWebListRatioFilter(DocFilter):
    """At most 0.3 newlines per word: lists and menus, not prose."""

    name = "fineweb"

    def __init__(self, *, max_ratio: float = 0.3) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        ratio = doc.text.count("\n") / max(1, len(tokens(doc.text)))
        if ratio > self.max_ratio:
            return Verdict.drop("list_ratio", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))
