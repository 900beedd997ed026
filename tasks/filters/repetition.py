"""Gopher repetition rules (Rae et al. 2021, Table A1), one rule per class. A document that
repeats lines, paragraphs or n-grams too much is boilerplate or spam. ``None`` disables a side.

Measured as datatrove measures them (repeats after the first occurrence; character fractions
over the whole text), so the decisions agree with the reference implementation.
"""

from __future__ import annotations

from tasks.base import DocFilter, Verdict
from tasks.filters.text import (
    duplicate_ngram_chars,
    duplicates,
    paragraphs,
    raw_lines,
    top_ngram_chars,
)
from tasks.schema import Document

# (n, max fraction of characters) — Gopher Table A1
TOP_NGRAMS = ((2, 0.20), (3, 0.18), (4, 0.16))
DUP_NGRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


class DuplicateParagraphsFilter(DocFilter):
    """At most 30% of paragraphs, holding at most 20% of the characters, may be repeats."""

    name = "gopher_rep"

    def __init__(self, *, max_fraction: float | None = 0.3,
                 max_char_fraction: float | None = 0.2) -> None:
        self.max_fraction, self.max_char_fraction = max_fraction, max_char_fraction

    def keep(self, doc: Document) -> Verdict:
        paras = paragraphs(doc.text)
        count, chars = duplicates(paras)
        frac, char_frac = count / len(paras), chars / max(1, len(doc.text))
        if self.max_fraction is not None and frac > self.max_fraction:
            return Verdict.drop("dup_paragraphs", fraction=round(frac, 4))
        if self.max_char_fraction is not None and char_frac > self.max_char_fraction:
            return Verdict.drop("dup_paragraph_chars", char_fraction=round(char_frac, 4))
        return Verdict.ok(fraction=round(frac, 4), char_fraction=round(char_frac, 4))


class DuplicateLinesFilter(DocFilter):
    """At most 30% of lines, holding at most 20% of the characters, may be repeats."""

    name = "gopher_rep"

    def __init__(self, *, max_fraction: float | None = 0.3,
                 max_char_fraction: float | None = 0.2) -> None:
        self.max_fraction, self.max_char_fraction = max_fraction, max_char_fraction

    def keep(self, doc: Document) -> Verdict:
        ls = raw_lines(doc.text)
        count, chars = duplicates(ls)
        frac, char_frac = count / len(ls), chars / max(1, len(doc.text))
        if self.max_fraction is not None and frac > self.max_fraction:
            return Verdict.drop("dup_lines", fraction=round(frac, 4))
        if self.max_char_fraction is not None and char_frac > self.max_char_fraction:
            return Verdict.drop("dup_line_chars", char_fraction=round(char_frac, 4))
        return Verdict.ok(fraction=round(frac, 4), char_fraction=round(char_frac, 4))


class TopNGramFilter(DocFilter):
    """The most frequent word n-gram may cover at most ``max_fraction`` of the characters
    (Gopher: 0.20 for 2-grams, 0.18 for 3-grams, 0.16 for 4-grams)."""

    name = "gopher_rep"

    def __init__(self, *, n: int, max_fraction: float) -> None:
        self.n, self.max_fraction = n, max_fraction

    def keep(self, doc: Document) -> Verdict:
        frac = top_ngram_chars(doc.text, self.n) / max(1, len(doc.text))
        if frac > self.max_fraction:
            return Verdict.drop(f"top_{self.n}gram", fraction=round(frac, 4))
        return Verdict.ok(fraction=round(frac, 4))


class DuplicateNGramFilter(DocFilter):
    """Repeated word n-grams may cover at most ``max_fraction`` of the characters (Gopher:
    0.15 for 5-grams down to 0.10 for 10-grams)."""

    name = "gopher_rep"

    def __init__(self, *, n: int, max_fraction: float) -> None:
        self.n, self.max_fraction = n, max_fraction

    def keep(self, doc: Document) -> Verdict:
        frac = duplicate_ngram_chars(doc.text, self.n) / max(1, len(doc.text))
        if frac > self.max_fraction:
            return Verdict.drop(f"dup_{self.n}gram", fraction=round(frac, 4))
        return Verdict.ok(fraction=round(frac, 4))
