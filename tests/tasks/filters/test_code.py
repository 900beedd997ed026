from __future__ import annotations

from lmforge.tasks.filters.code import CodeAlphanumFilter, CodeLineLengthFilter
from lmforge.tasks.schema import Document


def doc(text: str) -> Document:
    return Document.new("code", "r#f.py", text)


def test_line_length_rules() -> None:
    f = CodeLineLengthFilter(max_line_length=1000, max_mean_line_length=100)
    assert f.keep(doc("x = 1\n" * 10)).keep
    assert f.keep(doc("x" * 1001)).reason == "long_line"
    assert f.keep(doc(("y" * 150 + "\n") * 3)).reason == "long_mean_line"
    assert f.keep(doc("x" * 1000)).reason == "long_mean_line"  # 1000 is allowed as max only
    assert CodeLineLengthFilter(max_line_length=None, max_mean_line_length=None).keep(
        doc("x" * 5000)).keep


def test_alphanumeric_fraction() -> None:
    f = CodeAlphanumFilter(min_alphanumeric_fraction=0.25)
    assert f.keep(doc("def f(x): return x")).keep
    assert f.keep(doc("{}[]();,.:" * 10 + "ab")).reason == "low_alphanumeric_fraction"
