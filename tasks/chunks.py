"""Bounded pieces of long text, for everything that has a length limit or a cost that grows
faster than the text (spaCy's ``max_length``, classifiers that truncate, per-call time limits).

A piece ends at the last paragraph break before the limit, else the last line break, else the
last sentence end, else the last space; only a run of text with none of those is cut hard.
The pieces cover the input exactly, in order, so results found in them map back by offset.
"""

from __future__ import annotations

import re

_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?][\"')\]]*\s"),
           re.compile(r"\s"))


def bounded_spans(text: str, max_chars: int, start: int = 0, end: int | None = None
                  ) -> list[tuple[int, int]]:
    """(start, end) pieces of ``text[start:end]``, each at most ``max_chars`` long."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    end = len(text) if end is None else end
    spans = []
    while end - start > max_chars:
        limit = start + max_chars
        cut = limit
        for pattern in _BREAKS:
            found = [m.end() for m in pattern.finditer(text, start + max_chars // 2, limit)]
            if found:
                cut = found[-1]
                break
        spans.append((start, cut))
        start = cut
    if end > start or not spans:
        spans.append((start, end))
    return spans
