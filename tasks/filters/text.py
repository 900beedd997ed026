"""Text measurements shared by the rules, cached per text so a chain of rules tokenizes a
document once.

Words are counted two ways (``word_tokenizer``):

* ``whitespace`` (default): whitespace-delimited words, as the Gopher paper counts them (Rae
  et al. 2021, App. A: "words" of a document) and as C4's and FineWeb's code split lines; the
  list markers that text extraction leaves at line starts ("- ", "• ") are markup, not words.
* ``datatrove``: the Penn-Treebank-style tokens datatrove's rules get from NLTK, where "town."
  is "town" + "." and punctuation marks count as words (of the alphabetic-word ratio, the
  n-grams); for users who need datatrove's decisions. A regular expression does it about a
  hundred times faster than NLTK and needs no downloaded model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import Field

WordTokenizer = Literal["whitespace", "datatrove"]
BULLETS = ("•", "-", "●", "‣", "◦", "⁃", "▪", "*", "–")
_TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]+")
_PARAGRAPHS = re.compile(r"\n{2,}")
_NEWLINES = re.compile(r"\n+")
CACHE = 64


def code_lines_field() -> Any:
    """The one declaration of ``ignore_code_lines`` that line and n-gram repetition rules share."""
    return Field(True, description="lines of program listings (statements, prompts, imports, "
                 "calls) are syntax, not repeated text; false counts them as datatrove does")


def word_tokenizer_field() -> Any:
    """The one declaration of the ``word_tokenizer`` setting every word-based rule shares."""
    return Field("whitespace", description="how words are counted: 'whitespace' as in the "
                 "papers (Gopher, App. A; C4 and FineWeb split on whitespace), 'datatrove' "
                 "as datatrove does (spaCy's English tokens: punctuation marks count in the "
                 "ratios and n-grams), for parity with its decisions")


@lru_cache(maxsize=CACHE)
def whitespace_words(text: str) -> tuple[str, ...]:
    """Whitespace-delimited words, without the list marker that starts a list-item line."""
    out: list[str] = []
    for line in text.split("\n"):
        parts = line.split()
        if parts and parts[0] in BULLETS:  # the marker of a list item
            parts = parts[1:]
        out.extend(parts)
    return tuple(out)


def counted_words(text: str, tokenizer: WordTokenizer) -> tuple[str, ...]:
    """The words the word-count, word-length and stop-word rules count: whitespace words, or
    datatrove's tokens that are not all punctuation."""
    if tokenizer == "whitespace":
        return whitespace_words(text)
    return tuple(t for t in datatrove_tokens(text) if not is_punctuation(t))


def ratio_units(text: str, tokenizer: WordTokenizer) -> tuple[str, ...]:
    """The units of the per-word ratios (alphabetic words, symbols) and of the n-grams:
    whitespace words, or every token with punctuation marks (datatrove)."""
    return whitespace_words(text) if tokenizer == "whitespace" else datatrove_tokens(text)


@lru_cache(maxsize=1)
def _spacy_english() -> Any:
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - spaCy comes with presidio
        raise ImportError("word_tokenizer 'datatrove' tokenizes with spaCy's blank English "
                          "pipeline (no model download): pip install spacy") from exc
    return spacy.blank("en").tokenizer


@lru_cache(maxsize=CACHE)
def datatrove_tokens(text: str) -> tuple[str, ...]:
    """The tokens datatrove's English word tokenizer yields: spaCy's rule-based English
    tokenizer (no model), each token stripped, whitespace tokens dropped. The tokens are
    sliced out of the text at the offsets one ``Doc.to_array`` gives (a token's text is the
    text at its offset), not read one ``Token`` object at a time."""
    from spacy.attrs import IDX, LENGTH

    spans = _spacy_english()(text).to_array([IDX, LENGTH]).tolist()
    return tuple(t for t in (text[i:i + n].strip() for i, n in spans) if t)


_PUNCTUATION_CATEGORIES = frozenset({"Sm", "Sc", "Sk", "Cc"})


@lru_cache(maxsize=4096)
def _is_punctuation_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "P" or category in _PUNCTUATION_CATEGORIES or ch in "►"


def is_punctuation(token: str) -> bool:
    """Every character a punctuation mark, a math/currency/modifier symbol or a control
    character (datatrove's "symbol words", which its word counts leave out)."""
    return all(_is_punctuation_char(ch) for ch in token)


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


# A line of code: it ends with a C-family statement or brace (``_CODE_ENDS``, tested on the
# line's end: a regex searching every position for it cost half the time), or it starts as one
# of these (matched at the line's start only):
_CODE_START = re.compile(
    r"\s*(?:\$|>>>|\.\.\.)\s"                      # a shell or REPL prompt
    r"|\s*(?:#include|#define|@\w+$)"               # a preprocessor line, a decorator
    r"|\s*(?:import|from\s+[\w.]+\s+import|def|class|return|static|typedef|struct"
    r"|elif|else|try|except|finally|while|for|if|with|yield|raise)\b(?:.*[:;({]|\s+\S+)?\s*$"
    r"|\s*[\w.\[\]'\"]+\s*[-+*/|&]?=\s*\S"           # an assignment
    r"|\s*[\w.]+\(.*\)[;:,]?\s*$"                   # a call
    r"|\s+[\w.'\"=\[\](){},:\s-]+,\s*$")              # an argument list continued
_CODE_ENDS = (";", "{", "}")
_PROSE_START = re.compile(r"^\s*[A-Z][a-z]+ [a-z]+ [a-z]+")


_CACHED_LINE_CHARS = 1_000  # longer lines are decided afresh: the cache stays a few MB


def is_code_line(line: str) -> bool:
    """A line of a program listing ("return NULL;", "import argparse", "$ python3 prog.py",
    "parser = argparse.ArgumentParser()"): in a tutorial its repeats are syntax, not the
    boilerplate that line-repetition rules are after. A line that starts like a sentence
    ("If the value ...") is never code."""
    return (_code_line_cached(line) if len(line) <= _CACHED_LINE_CHARS
            else _code_line(line))


def _code_line(line: str) -> bool:
    return ((line.rstrip()[-1:] in _CODE_ENDS or _CODE_START.match(line) is not None)
            and not _PROSE_START.match(line))


# the line rules of one document ask about each of its lines two or three times
_code_line_cached = lru_cache(maxsize=1 << 14)(_code_line)


def content_lines(lines: Iterable[str], *, markup: bool, code: bool) -> tuple[str, ...]:
    """The lines repetition rules count: without markup lines (no letter or digit: a bare
    list marker or separator) when ``markup``, without program-listing lines when ``code``."""
    return tuple(line for line in lines
                 if not (markup and not any(c.isalnum() for c in line))
                 and not (code and is_code_line(line)))


@lru_cache(maxsize=CACHE)
def without_code_lines(text: str) -> str:
    """The text with the lines of program listings removed (``is_code_line``): what
    repetition rules written for prose should measure in a tutorial."""
    return "\n".join(line for line in text.split("\n") if not is_code_line(line))


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
def _word_arrays(text: str, tokenizer: WordTokenizer = "datatrove"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(id of each n-gram unit, its length): n-grams become integer arithmetic."""
    ids: dict[str, int] = {}
    units = ratio_units(text, tokenizer)
    # a unit's id is the position where it first occurs (one C-level pass, no Python loop)
    codes = np.fromiter(map(ids.setdefault, units, range(len(units))), dtype=np.int64,
                        count=len(units))
    lengths = np.fromiter(map(len, units), dtype=np.int64, count=len(units))
    return codes, lengths


_KEY_BASE = np.uint64(1_000_003)


def _ngram_keys(codes: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit key per n-gram (a polynomial hash of the word ids; wraps around)."""
    m = len(codes) - n + 1
    keys = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            keys = keys * _KEY_BASE + codes[k:k + m].astype(np.uint64)
    return keys


@lru_cache(maxsize=CACHE)
def top_ngram_chars(text: str, n: int, tokenizer: WordTokenizer = "datatrove") -> int:
    """Characters of the most frequent word n-gram (joined with spaces) times its count."""
    codes, lengths = _word_arrays(text, tokenizer)
    if len(codes) < n:
        return 0
    positions, keys = _repeated_ngrams(text, n, tokenizer)
    if not len(positions):  # every n-gram occurs once: the first one is the top
        return int(lengths[:n].sum()) + n - 1
    # every occurrence of a repeated n-gram is among ``positions`` (ascending), so its first
    # index there is its first occurrence
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    top = counts.max()
    start = int(positions[first[counts == top].min()])  # ties: the n-gram that occurs first
    span = int(lengths[start:start + n].sum()) + n - 1
    return span * int(top)


def _repeats_of_keys(positions: np.ndarray, keys: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The positions (ascending) and keys of the n-grams among ``keys`` that occur twice or
    more."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    twice = counts[inverse] > 1
    return positions[twice], keys[twice]


@lru_cache(maxsize=CACHE)
def _ngram_repeats(text: str, tokenizer: WordTokenizer) -> dict[int, tuple[np.ndarray,
                                                                           np.ndarray]]:
    """n -> (positions, keys) of the word n-grams that occur more than once, filled as the
    n are asked for."""
    return {}


def _repeated_ngrams(text: str, n: int, tokenizer: WordTokenizer
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Positions and keys of the repeated word n-grams. An n-gram that occurs twice starts
    with an (n-1)-gram that occurs twice, followed by another one: so once the repeated
    (n-1)-grams are known, only the positions where two of them follow each other are keyed
    and counted (few in prose), not every position again."""
    known = _ngram_repeats(text, tokenizer)
    if n in known:
        return known[n]
    codes, _ = _word_arrays(text, tokenizer)
    m = len(codes) - n + 1
    if n - 1 in known:
        before, before_keys = known[n - 1]
        repeated = np.zeros(len(codes) + 1, dtype=bool)
        repeated[before] = True
        follows = repeated[before + 1] & (before < m)
        starts = before[follows]
        with np.errstate(over="ignore"):
            keys = before_keys[follows] * _KEY_BASE + codes[starts + n - 1].astype(np.uint64)
        known[n] = _repeats_of_keys(starts, keys)
    else:
        known[n] = _repeats_of_keys(np.arange(m), _ngram_keys(codes, n))
    return known[n]


@lru_cache(maxsize=CACHE)
def duplicate_ngram_chars(text: str, n: int, tokenizer: WordTokenizer = "datatrove") -> int:
    """Characters (spaces excluded) of repeated word n-grams, scanning left to right and
    jumping past each repeat, so overlapping repeats are counted once."""
    codes, lengths = _word_arrays(text, tokenizer)
    if len(codes) < n:
        return 0
    positions, keys = _repeated_ngrams(text, n, tokenizer)
    if not len(positions):  # an n-gram seen once never counts
        return 0
    ends = np.concatenate([[0], np.cumsum(lengths)])
    spans = (ends[positions + n] - ends[positions]).tolist()
    seen: set[int] = set()
    chars, resume = 0, 0  # positions before ``resume`` were jumped over: not seen
    for i, key, span in zip(positions.tolist(), keys.tolist(), spans, strict=True):
        if i < resume:
            continue
        if key in seen:
            chars += span
            resume = i + n
        else:
            seen.add(key)
    return chars


@lru_cache(maxsize=CACHE)
def logical_lines(text: str) -> tuple[str, ...]:
    """Lines as written rather than as wrapped: a line that stops mid-sentence (no closing
    punctuation) is joined with the next when that one continues it (a lower-case start, or
    the line is long enough to be a wrapped one). Headings, list items and short labels stay
    lines of their own. Hard-wrapped text (documentation, plain-text pages) otherwise reaches
    C4's and FineWeb's line rules as sentence fragments."""
    out: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        prev = out[-1] if out else ""
        if line and prev and _continues(prev, line):
            out[-1] = f"{prev} {line}"
        else:
            out.append(line)
    return tuple(out)


_CLOSED = (".", "!", "?", '"', "'", "”", "’", ")", "]", "…", "¶")
_PAUSED = (";", ":")  # a clause or a list ends here, or the sentence goes on in lower case


def is_list_item(line: str) -> bool:
    """A line that starts with a list marker ("- item", "• item")."""
    return line[:1] in BULLETS and line[1:2] in (" ", "")


def _continues(prev: str, line: str) -> bool:
    if prev.endswith(_CLOSED) or is_list_item(line):
        return False
    if prev.endswith(_PAUSED):
        return line[0].islower() and not is_code_line(line)
    if line[0].islower():
        return True
    return len(prev) >= 60 and not line[0].isdigit()
