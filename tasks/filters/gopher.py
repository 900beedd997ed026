"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", Appendix A.1.1, MassiveText quality filters), one rule per class.

Defaults are the paper's values; ``None`` disables a side of a rule. Words are the tokens that
hold a letter or digit; ratios that the reference implementation takes over all tokens
(punctuation included) are taken the same way. One deliberate difference: stop words are
matched case-insensitively ("The" counts as "the").
"""

from __future__ import annotations

from tasks.base import DocFilter, Verdict
from tasks.filters.text import tokens, words
from tasks.schema import Document

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "●", "‣", "◦", "⁃", "▪", "*")
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
        return Verdict.ok(words=n)


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
        return Verdict.ok(mean=round(mean, 3))


class GopherSymbolRatioFilter(DocFilter):
    """Hash symbols, and separately ellipses, per token must not exceed 0.1 (the survey's
    symbol-to-word rule)."""

    name = "gopher"

    def __init__(self, *, max_ratio: float = 0.1) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        n = len(tokens(doc.text)) or 1
        hashes = doc.text.count("#") / n
        ellipses = sum(doc.text.count(e) for e in ELLIPSES) / n
        if max(hashes, ellipses) > self.max_ratio:
            return Verdict.drop("high_symbol_word_ratio", hash_ratio=round(hashes, 4),
                                ellipsis_ratio=round(ellipses, 4))
        return Verdict.ok(hash_ratio=round(hashes, 4), ellipsis_ratio=round(ellipses, 4))


class GopherBulletLinesFilter(DocFilter):
    """At most 90% of lines may start with a bullet point."""

    name = "gopher"

    def __init__(self, *, max_ratio: float = 0.9) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        ls = doc.text.splitlines() or [""]
        ratio = sum(line.lstrip().startswith(BULLETS) for line in ls) / len(ls)
        if ratio > self.max_ratio:
            return Verdict.drop("too_many_bullet_lines", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class GopherEllipsisLinesFilter(DocFilter):
    """At most 30% of lines may end with an ellipsis."""

    name = "gopher"

    def __init__(self, *, max_ratio: float = 0.3) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        ls = doc.text.splitlines() or [""]
        ratio = sum(line.rstrip().endswith(ELLIPSES) for line in ls) / len(ls)
        if ratio > self.max_ratio:
            return Verdict.drop("too_many_ellipsis_lines", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class GopherAlphaWordsFilter(DocFilter):
    """At least 80% of tokens must contain an alphabetic character."""

    name = "gopher"

    def __init__(self, *, min_ratio: float = 0.8) -> None:
        self.min_ratio = min_ratio

    def keep(self, doc: Document) -> Verdict:
        toks = tokens(doc.text)
        ratio = sum(any(c.isalpha() for c in t) for t in toks) / (len(toks) or 1)
        if ratio < self.min_ratio:
            return Verdict.drop("too_few_alpha_words", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class GopherStopWordsFilter(DocFilter):
    """At least two of the English stop words (the, be, to, of, and, that, have, with) appear."""

    name = "gopher"

    def __init__(self, *, min_stop_words: int = 2) -> None:
        self.min_stop_words = min_stop_words

    def keep(self, doc: Document) -> Verdict:
        found = STOP_WORDS.intersection(w.lower() for w in words(doc.text))
        if len(found) < self.min_stop_words:
            return Verdict.drop("too_few_stop_words", stop_words=len(found))
        return Verdict.ok(stop_words=len(found))
