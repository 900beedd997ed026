"""Text measurements shared by the rules, cached per text so a chain of rules splits a document
into words and lines once."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"\S+")


@lru_cache(maxsize=256)
def words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words, as the Gopher rules count them."""
    return tuple(_WORD.findall(text))


@lru_cache(maxsize=256)
def lines(text: str) -> tuple[str, ...]:
    """Non-empty lines, stripped."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())
