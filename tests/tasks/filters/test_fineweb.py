from __future__ import annotations

from lmforge.tasks.filters.fineweb import (
    FineWebDuplicateLineCharsFilter,
    FineWebLinePunctuationFilter,
    FineWebListRatioFilter,
    FineWebShortLinesFilter,
)
from lmforge.tasks.schema import Document


def doc(text: str) -> Document:
    return Document.new("commoncrawl", "x#1", text)


def test_line_punctuation_share() -> None:
    f = FineWebLinePunctuationFilter(min_line_punctuation_ratio=0.12)
    menu = "\n".join(["Home", "News", "Sport", "Weather", "Contact", "About", "Shop", "Login"])
    assert f.keep(doc(menu)).reason == "line_punctuation"
    assert f.keep(doc(menu + "\nThis one ends well.")).reason == "line_punctuation"  # 1/9
    assert f.keep(doc(menu.rsplit("\n", 1)[0] + "\nThis one ends well.")).keep  # 1/8


def test_short_lines() -> None:
    f = FineWebShortLinesFilter(max_short_line_ratio=0.67, short_line_length=30)
    long_line = "This is a long line that has more than thirty characters in it."
    assert f.keep(doc("\n".join(["short"] * 2 + [long_line]))).keep  # 0.666
    assert f.keep(doc("\n".join(["short"] * 3 + [long_line]))).reason == "short_lines"


def test_duplicate_line_chars() -> None:
    f = FineWebDuplicateLineCharsFilter(max_duplicate_line_char_ratio=0.01)
    base = "\n".join(f"Unique line number {i} with its own words." for i in range(50))
    assert f.keep(doc(base)).keep
    assert f.keep(doc(base + "\nUnique line number 3 with its own words.")).reason == \
        "duplicate_line_chars"


def test_list_ratio() -> None:
    f = FineWebListRatioFilter(max_newline_ratio=0.3)
    assert f.keep(doc("one\ntwo\nthree\nfour")).reason == "list_ratio"
    assert f.keep(doc("a sentence of several words\nand another line of words")).keep
