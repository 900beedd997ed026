from __future__ import annotations

import itertools

import pytest
from lmforge.tasks.chunks import bounded_spans


def _check(text: str, limit: int) -> list[str]:
    spans = bounded_spans(text, limit)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(spans))  # contiguous
    assert all(b - a <= limit for a, b in spans)
    return [text[a:b] for a, b in spans]


def test_cuts_at_the_best_break_before_the_limit() -> None:
    text = "First paragraph here.\n\nSecond one is longer. It has two sentences.\nA line."
    pieces = _check(text, 40)
    assert pieces[0] == "First paragraph here.\n\n"
    sentences = _check("One sentence here. Another sentence there. And a third one.", 30)
    assert sentences[0] == "One sentence here. "


def test_a_run_without_breaks_is_cut_hard() -> None:
    assert _check("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_short_text_is_one_piece_and_ranges_work() -> None:
    assert bounded_spans("short", 100) == [(0, 5)]
    assert bounded_spans("", 10) == [(0, 0)]
    assert bounded_spans("abc def ghi", 4, 4, 11) == [(4, 8), (8, 11)]
    with pytest.raises(ValueError, match="max_chars"):
        bounded_spans("x", 0)
