"""Text measurements shared by the rules, cached per text so a chain of rules tokenizes a
document once.

Tokens follow the Penn-Treebank idea that datatrove's rules use (via NLTK): words and
punctuation marks are separate tokens, so "town." is "town" + "."; a regular expression does
it about a hundred times faster than NLTK and needs no downloaded model.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

_TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]+")
_PARAGRAPHS = re.compile(r"\n{2,}")
_NEWLINES = re.compile(r"\n+")
CACHE = 64


@lru_cache(maxsize=CACHE)
def tokens(text: str) -> tuple[str, ...]:
    """Words and punctuation marks."""
    return tuple(_TOKEN.findall(text))


@lru_cache(maxsize=CACHE)
def words(text: str) -> tuple[str, ...]:
    """Tokens that hold at least one letter or digit (punctuation-only tokens dropped)."""
    return tuple(t for t in tokens(text) if t[0].isalnum() or t[0] == "_")


@lru_cache(maxsize=CACHE)
def lines(text: str) -> tuple[str, ...]:
    """Non-empty lines, stripped."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=CACHE)
def paragraphs(text: str) -> tuple[str, ...]:
    return tuple(_PARAGRAPHS.split(text.strip()))


@lru_cache(maxsize=CACHE)
def raw_lines(text: str) -> tuple[str, ...]:
    """Lines split on runs of newlines (empty lines merged), unstripped."""
    return tuple(_NEWLINES.split(text))


def duplicates(items: tuple[str, ...]) -> tuple[int, int]:
    """(repeated elements, characters in them): every occurrence after the first counts."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


@lru_cache(maxsize=CACHE)
def _word_arrays(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(id of each token, its length): n-grams become integer arithmetic. Tokens include
    punctuation marks, as in the reference implementation's n-grams."""
    ids: dict[str, int] = {}
    toks = tokens(text)
    codes = np.fromiter((ids.setdefault(w, len(ids)) for w in toks), dtype=np.int64,
                        count=len(toks))
    lengths = np.fromiter((len(w) for w in toks), dtype=np.int64, count=len(toks))
    return codes, lengths


def _ngram_keys(codes: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit key per n-gram (a polynomial hash of the word ids; wraps around)."""
    m = len(codes) - n + 1
    keys = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            keys = keys * np.uint64(1_000_003) + codes[k:k + m].astype(np.uint64)
    return keys


@lru_cache(maxsize=CACHE)
def top_ngram_chars(text: str, n: int) -> int:
    """Characters of the most frequent word n-gram (joined with spaces) times its count."""
    codes, lengths = _word_arrays(text)
    if len(codes) < n:
        return 0
    keys = _ngram_keys(codes, n)
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    top = counts.max()
    start = int(first[counts == top].min())  # ties: the n-gram that occurs first
    span = int(lengths[start:start + n].sum()) + n - 1
    return span * int(top)


@lru_cache(maxsize=CACHE)
def duplicate_ngram_chars(text: str, n: int) -> int:
    """Characters (spaces excluded) of repeated word n-grams, scanning left to right and
    jumping past each repeat, so overlapping repeats are counted once."""
    codes, lengths = _word_arrays(text)
    if len(codes) < n:
        return 0
    keys = _ngram_keys(codes, n).tolist()
    spans = np.convolve(lengths, np.ones(n, dtype=np.int64), mode="valid").tolist()
    seen: set[int] = set()
    chars, i, last = 0, 0, len(keys)
    while i < last:
        key = keys[i]
        if key in seen:
            chars += spans[i]
            i += n
        else:
            seen.add(key)
            i += 1
    return chars
