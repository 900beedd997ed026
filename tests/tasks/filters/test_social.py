from __future__ import annotations

from lmforge.tasks.filters.code import CodeDataFileFilter
from lmforge.tasks.filters.social import RepeatedCharactersFilter, UniqueWordsFilter, UrlRatioFilter
from lmforge.tasks.schema import Document


def doc(text: str, source: str = "reddit") -> Document:
    return Document.new(source, "x#1", text)


def test_url_dump() -> None:
    f = UrlRatioFilter(max_url_ratio=0.5)
    assert f.keep(doc("https://a.example https://b.example look")).reason == "url_ratio"
    assert f.keep(doc("A good read about the mill: https://a.example today")).keep


def test_repeated_characters() -> None:
    f = RepeatedCharactersFilter(max_repeated_chars=10)
    assert f.keep(doc("lol" + "l" * 12)).reason == "repeated_characters"
    assert f.keep(doc("Well..... ok!!!")).keep
    assert f.keep(doc("a" + " " * 40 + "b")).keep  # whitespace runs do not count


def test_unique_words() -> None:
    f = UniqueWordsFilter(min_unique_word_ratio=0.3)
    assert f.keep(doc("spam " * 20)).reason == "repetitive"
    assert f.keep(doc("spam spam")).keep  # too short to judge


def test_data_file_detection() -> None:
    table = "DATA = [\n" + "\n".join(f"    {i}, {i * 7}, {i * 13}," for i in range(40)) + "\n]"
    assert CodeDataFileFilter().keep(doc(table, "code")).reason == "data_file"
    code = "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(20))
    assert CodeDataFileFilter().keep(doc(code, "code")).keep
