from __future__ import annotations

from lmforge.tasks.filters.lines import UppercaseLinesRemover
from lmforge.tasks.schema import Document


def test_all_caps_lines_are_removed_short_ones_stay() -> None:
    text = "SUBSCRIBE NOW FOR THE BEST DEALS\nA normal line.\nII. NATO\nAnother line."
    out = UppercaseLinesRemover(min_letters=10).rewrite(Document.new("commoncrawl", "x", text))
    assert out.text == "A normal line.\nII. NATO\nAnother line."
    assert dict(out.counts) == {"lines_removed": 1}


def test_unchanged_text_reports_nothing() -> None:
    out = UppercaseLinesRemover().rewrite(Document.new("books", "x", "Nothing loud here."))
    assert out.text == "Nothing loud here." and not out.counts
