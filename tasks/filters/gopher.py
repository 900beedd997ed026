"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", Appendix A.1.1, MassiveText quality filters), one rule per class.

Defaults are the paper's values. A threshold of ``None`` disables that side of a rule.
"""

from __future__ import annotations

from tasks.base import KEEP, DocFilter, Verdict
from tasks.filters.text import lines, words
from tasks.schema import Document

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("●", "•", "*", "-", "‣", "◦", "⁃", "▪")
ELLIPSES = ("...", "…")


class GopherWordCountFilter(DocFilter):
    """Documents with fewer than 50 or more than 100,000 words are dropped."""

    name = "gopher"

    def __init__(self, *, min_words: int | None = 50, max_words: int | None = 100_000) -> None:
        self.min_words, self.max_words = min_words, max_words

    def keep(self, doc: Document) -> Verdict:
        n = len(words(doc.text))
        if self.min_words is not None and n < self.min_words:
            return Verdict.drop("too_few_words", words=n, min_words=self.min_words)
        if self.max_words is not None and n > self.max_words:
            return Verdict.drop("too_many_words", words=n, max_words=self.max_words)
        return KEEP


class GopherMeanWordLengthFilter(DocFilter):
    """The mean word length must lie within 3 to 10 characters."""

    name = "gopher"

    def __init__(self, *, min_mean: float | None = 3, max_mean: float | None = 10) -> None:
        self.min_mean, self.max_mean = min_mean, max_mean

    def keep(self, doc: Document) -> Verdict:
        ws = words(doc.text)
        mean = sum(map(len, ws)) / len(ws) if ws else 0.0
        if self.min_mean is not None and mean < self.min_mean:
            return Verdict.drop("short_mean_word_length", mean=round(mean, 3))
        if self.max_mean is not None and mean > self.max_mean:
            return Verdict.drop("long_mean_word_length", mean=round(mean, 3))
        return KEEP


class GopherSymbolRatioFilter(DocFilter):
    """Hash symbols and ellipses per word must not exceed 0.1 (the survey's symbol-to-word rule)."""

    name = "gopher"

    def __init__(self, *, max_ratio: float = 0.1) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        n = len(words(doc.text)) or 1
        symbols = doc.text.count("#") + sum(doc.text.count(e) for e in ELLIPSES)
        ratio = symbols / n
        if ratio > self.max_ratio:
            return Verdict.drop("high_symbol_word_ratio", ratio=round(ratio, 4))
        return KEEP


class GopherBulletLinesFilter(DocFilter):
    """At most 90% of lines may start with a bullet point."""

    name = "gopher"

    def __init__(self, *, max_ratio: float = 0.9) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        ls = lines(doc.text)
        ratio = sum(line.startswith(BULLETS) for line in ls) / (len(ls) or 1)
        if ratio > self.max_ratio:
            return Verdict.drop("too_many_bullet_lines", ratio=round(ratio, 4))
        return KEEP


class GopherEllipsisLinesFilter(DocFilter):
    """At most 30% of lines may end with an ellipsis."""

    name = "gopher"

    def __init__(self, *, max_ratio: float = 0.3) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        ls = lines(doc.text)
        ratio = sum(line.endswith(ELLIPSES) for line in ls) / (len(ls) or 1)
        if ratio > self.max_ratio:
            return Verdict.drop("too_many_ellipsis_lines", ratio=round(ratio, 4))
        return KEEP


class GopherAlphaWordsFilter(DocFilter):
    """At least 80% of words must contain an alphabetic character."""

    name = "gopher"

    def __init__(self, *, min_ratio: float = 0.8) -> None:
        self.min_ratio = min_ratio

    def keep(self, doc: Document) -> Verdict:
        ws = words(doc.text)
        ratio = sum(any(c.isalpha() for c in w) for w in ws) / (len(ws) or 1)
        if ratio < self.min_ratio:
            return Verdict.drop("too_few_alpha_words", ratio=round(ratio, 4))
        return KEEP


class GopherStopWordsFilter(DocFilter):
    """At least two of the English stop words (the, be, to, of, and, that, have, with) appear."""

    name = "gopher"

    def __init__(self, *, min_stop_words: int = 2) -> None:
        self.min_stop_words = min_stop_words

    def keep(self, doc: Document) -> Verdict:
        found = STOP_WORDS.intersection(w.lower() for w in words(doc.text))
        if len(found) < self.min_stop_words:
            return Verdict.drop("too_few_stop_words", stop_words=len(found))
        return KEEP
