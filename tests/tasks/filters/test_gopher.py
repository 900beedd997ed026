"""Each Gopher rule at and around its threshold, with the reason it reports."""

from __future__ import annotations

import pytest
from lmforge.tasks.filters.gopher import (
    GopherAlphaWordsFilter,
    GopherBulletLinesFilter,
    GopherEllipsisLinesFilter,
    GopherMeanWordLengthFilter,
    GopherStopWordsFilter,
    GopherSymbolRatioFilter,
    GopherWordCountFilter,
)
from lmforge.tasks.schema import Document


def doc(text: str) -> Document:
    return Document.new("commoncrawl", "x#1", text)


def reason(f, text: str) -> str | None:
    verdict = f.keep(doc(text))
    return None if verdict.keep else verdict.reason


@pytest.mark.parametrize(("n", "expected"), [(49, "too_few_words"), (50, None), (100, None),
                                             (101, "too_many_words")])
def test_word_count_bounds(n: int, expected: str | None) -> None:
    assert reason(GopherWordCountFilter(min_words=50, max_words=100), "word " * n) == expected


def test_word_count_none_disables_a_side() -> None:
    assert reason(GopherWordCountFilter(min_words=None, max_words=None), "w") is None


def test_mean_word_length() -> None:
    f = GopherMeanWordLengthFilter(min_mean_word_length=3, max_mean_word_length=10)
    assert reason(f, "ab ab ab") == "short_mean_word_length"
    assert reason(f, "abc abc") is None
    assert reason(f, "abcdefghij") is None
    assert reason(f, "abcdefghijk") == "long_mean_word_length"


def test_symbol_ratio_is_the_surveys_point_one() -> None:
    f = GopherSymbolRatioFilter(max_symbol_word_ratio=0.1)
    assert reason(f, "# " + "word " * 9) is None  # 1 symbol / 10 words = 0.1
    assert reason(f, "# # " + "word " * 8) == "high_symbol_word_ratio"
    assert reason(f, "... " + "word " * 8) == "high_symbol_word_ratio"  # ellipsis counts


def test_bullet_lines() -> None:
    f = GopherBulletLinesFilter(max_bullet_lines_ratio=0.9)
    assert reason(f, "\n".join(["- item"] * 9 + ["text"])) is None
    assert reason(f, "\n".join(["• item"] * 10)) == "too_many_bullet_lines"


def test_ellipsis_lines() -> None:
    f = GopherEllipsisLinesFilter(max_ellipsis_lines_ratio=0.3)
    assert reason(f, "a...\nb\nc\nd") is None
    assert reason(f, "a...\nb…\nc\nd") == "too_many_ellipsis_lines"


def test_alpha_words() -> None:
    f = GopherAlphaWordsFilter(min_alpha_words_ratio=0.8)
    assert reason(f, "one two three four 5") is None
    assert reason(f, "one two three 4 5") == "too_few_alpha_words"


def test_stop_words_are_distinct() -> None:
    f = GopherStopWordsFilter(min_stop_words=2)
    assert reason(f, "the the the cat") == "too_few_stop_words"
    assert reason(f, "The cat and the dog") is None


def test_values_are_reported() -> None:
    verdict = GopherWordCountFilter(min_words=5).keep(doc("a b"))
    assert dict(verdict.values) == {"words": 2, "min_words": 5}
