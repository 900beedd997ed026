"""Language identification with py3langid (Lui & Baldwin 2012's langid.py model, 97 languages,
shipped inside the PyPI wheel: works offline). The language and its probability are stored on
the document before the keep-list decides, so the list can change without rescoring.

Technical English confuses a character n-gram model: ``PyObject_New()``, ``os.path``, URLs and
version numbers are not English words. So the model sees the natural-language part only
(identifiers, code spans, paths, URLs and numbers masked), paragraph by paragraph, and the
document's language is the length-weighted vote of its paragraphs; its score is the
length-weighted probability of that language. ``benchmarks/decisions.py`` measures it on the
Python documentation. The model's numbers are py3langid's; the paragraphs of a document are
scored in one numpy pass (``ParagraphScorer``) instead of py3langid's byte loop per paragraph.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.schema import Document
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from pydantic import Field
from scipy import sparse

# What is masked, in order (the first that matches at a position wins): links and addresses;
# inline code; dotted, pathed, hyphenated identifiers (os.path.join); words with a camelCase
# step, an underscore or a digit (PyObject, snake_case, versions, hex); calls (open()); keyword
# arguments of a signature (title=None, **options); runs of symbols (->, ==, */).
# Written for speed with the same matches as the plain alternation
# ``tests/tasks/filters/test_language.py`` holds: no match can start inside a run of word
# characters (every match ends at the end of one or before a non-word character) except a
# link or an address, so the word alternatives share one ``\b`` (tested once per position,
# not four times); the three that start ``\w*`` and end ``\w*`` share one; and the address
# alternative, quadratic in a token's length, is left out of paragraphs without an ``@``.
_MASK_TAIL = (r"|`[^`\n]*`"
              r"|\b(?:\w+(?:[._:/\\-]\w+)+(?:\(\))?"
              r"|\w*(?:[a-z][A-Z]|_|\d)\w*"
              r"|\w+\(\)"
              r"|\w+=[^\s,)]*)"
              r"|\*{1,2}\w+"
              r"|[^\w\s]{2,}")
_MASK_AT = re.compile(r"https?://\S+|www\.\S+|\S+@\S+\.\w+" + _MASK_TAIL)
_MASK = re.compile(r"https?://\S+|www\.\S+" + _MASK_TAIL)
_PARAGRAPH = re.compile(r"\n\s*\n|\n")
MIN_LETTERS = 20  # a paragraph with fewer letters after masking does not vote


@lru_cache(maxsize=1)
def identifier() -> LanguageIdentifier:
    """Loaded once per process (about 0.3 s)."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def natural_text(text: str) -> str:
    """``text`` with what is not natural language (code, identifiers, links) blanked."""
    return (_MASK_AT if "@" in text else _MASK).sub(" ", text)


# Every mask match holds one of these (a digit, "_", a symbol the alternatives start or join
# with, a camelCase step, two symbols in a row, or a separator between word characters), and
# only a backtick span crosses whitespace: so outside backticks a word without one is left
# as it is, and the mask runs on the few words that have one (one in twenty in prose).
_MASKABLE = re.compile(r"[\d_`*@=/\\]|[a-z][A-Z]|[^\w\s]{2}|\w[.:\-]\w")


def natural_words(paragraph: str) -> str:
    """``natural_text(paragraph)``'s words joined by single spaces, masking word by word."""
    if "`" in paragraph:
        return " ".join(natural_text(paragraph).split())
    words: list[str] = []
    for word in paragraph.split():
        if _MASKABLE.search(word):
            words += natural_text(word).split()
        else:
            words.append(word)
    return " ".join(words)


def _has_letters(text: str, least: int = MIN_LETTERS) -> bool:
    """At least ``least`` letters (stops counting there: most paragraphs reach it at once)."""
    seen = 0
    for char in text:
        if char.isalpha():
            seen += 1
            if seen >= least:
                return True
    return False


# Bytes that UTF-8 never produces: one of them pads the paragraphs ``ParagraphScorer`` joins
_NEVER_UTF8 = (0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA, 0xF9, 0xF8, 0xF7, 0xF6, 0xF5, 0xC1, 0xC0)


class ParagraphScorer:
    """py3langid's probabilities for every paragraph of a document in one numpy pass.

    py3langid walks its byte automaton (an Aho-Corasick DFA over the model's byte n-grams) in a
    Python loop, one paragraph at a time, and scores each paragraph's feature counts with its
    own small matrix product: two thirds of the language step. The automaton's state after a
    byte is the longest suffix of the text so far that is a node of its trie, and no node is
    deeper than ``depth`` bytes, so the state after byte ``i`` is the state reached from the
    root by walking bytes ``i - depth + 1 .. i`` only. That makes every position independent:
    ``depth`` vectorised steps over the whole document replace the byte loop. Paragraphs are
    joined with ``depth - 1`` pad bytes before each (a byte that UTF-8 never produces and that
    keeps the root at the root), so no window reaches into the previous paragraph. The
    (paragraph, feature) counts become one sparse matrix, and one product with the model's
    feature table scores all paragraphs. Same numbers as ``LanguageIdentifier._decide`` up to
    float32 summation order (``tests/real/test_decisions.py`` compares them on real text)."""

    def __init__(self, lid: LanguageIdentifier) -> None:
        self.next = np.frombuffer(lid.tk_nextmove, dtype=np.uint32)
        self.rowbase = np.asarray(lid._rowbase, dtype=np.intp)  # state -> row offset
        self.output = np.asarray(lid.tk_output, dtype=np.intp)  # state -> feature or -1
        self.table = np.asarray(lid.nb_ptc, dtype=np.float32)  # feature x class
        self.prior = np.asarray(lid.nb_pc, dtype=np.float32)
        self.aliases = list(lid._alias_pairs)
        self.encode = lid._encode  # the bytes py3langid scores: NFC, UTF-8, all-caps lowered
        self.depth = self._trie_depth()
        stay = [b for b in _NEVER_UTF8 if self.next[self.rowbase[0] + b] == 0]
        if not stay or self.output[0] >= 0:
            raise ValueError("py3langid's model changed: no pad byte keeps its automaton at "
                             "the root; pin py3langid>=0.4,<0.5")
        self.pad_byte = stay[0]
        self.pad = bytes([self.pad_byte]) * (self.depth - 1)

    def _trie_depth(self) -> int:
        """The deepest state: breadth-first from the root over all 256 bytes (a state's
        distance from the root is the length of its trie string)."""
        seen = np.zeros(len(self.rowbase), dtype=bool)
        seen[0] = True
        frontier, depth = np.array([0], dtype=np.intp), 0
        every_byte = np.arange(256, dtype=np.intp)
        while True:
            reached = np.zeros(len(self.rowbase), dtype=bool)
            reached[self.next[(self.rowbase[frontier][:, None] + every_byte).ravel()]] = True
            frontier = np.flatnonzero(reached & ~seen)
            if not len(frontier):
                return depth
            seen[frontier] = True
            depth += 1

    def __call__(self, pieces: list[str]) -> np.ndarray:
        """(paragraphs x classes) probabilities, aliases folded into their first column."""
        encoded = [self.encode(p) for p in pieces]
        lengths = np.fromiter(map(len, encoded), dtype=np.intp, count=len(encoded))
        data = np.frombuffer(b"".join([self.pad + e for e in encoded]), dtype=np.uint8)
        depth = self.depth
        n = len(data) - (depth - 1)
        state = np.zeros(n, dtype=np.intp)
        for k in range(depth):  # state after byte i: the walk over bytes i-depth+1..i
            state = self.next[self.rowbase[state] + data[k:n + k]]
        feature = self.output[state]
        hit = (feature >= 0) & (data[depth - 1:] != self.pad_byte)
        paragraph = np.repeat(np.arange(len(encoded)), lengths + (depth - 1))[depth - 1:]
        # (paragraph, feature) counts as a CSR matrix made directly from the sorted keys
        # (scipy's COO input and sum_duplicates cost as much as the product)
        width = len(self.table)
        keys = np.sort(paragraph[hit] * width + feature[hit])
        opens = np.empty(len(keys), dtype=bool)  # the first of a run of equal keys
        opens[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=opens[1:])
        starts = np.flatnonzero(opens)
        distinct = keys[starts]
        rows = distinct // width
        indptr = np.searchsorted(rows, np.arange(len(encoded) + 1))
        repeats = np.diff(np.append(starts, len(keys))).astype(np.float32)
        counts = sparse.csr_matrix((np.log1p(repeats), distinct - rows * width, indptr),
                                   shape=(len(encoded), width))
        scores = np.asarray(counts @ self.table, dtype=np.float32)
        some = np.diff(indptr) > 0  # no feature: py3langid's 0.0 row (uniform)
        scores[some] += self.prior
        scores[some] *= (1.0 / np.sqrt(lengths[some])).astype(np.float32)[:, None]
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        for first, dupe in self.aliases:
            scores[:, first] += scores[:, dupe]
            scores[:, dupe] = 0.0
        return scores


@lru_cache(maxsize=1)
def scorer() -> ParagraphScorer:
    """Built once per process from the loaded model (about 0.5 s: the trie's depth)."""
    return ParagraphScorer(identifier())


def _vote(labels: list[str], pieces: list[str], scores: np.ndarray) -> tuple[str, float]:
    """Each piece votes for its likeliest language with its length; the winner's score is its
    length-weighted probability. Equal totals go to the language voted for first."""
    weights = np.fromiter(map(len, pieces), dtype=np.float64, count=len(pieces))
    best = scores.argmax(axis=1)  # first of equal scores, as py3langid's rank order
    totals = np.bincount(best, weights=weights, minlength=scores.shape[1])
    tied = totals == totals.max()
    column = int(best[np.flatnonzero(tied[best])[0]])
    return labels[column], float(weights @ scores[:, column] / weights.sum())


def identify(text: str, max_chars: int = 20_000, mask: bool = True) -> tuple[str, float]:
    """(language, probability) by a length-weighted vote of the paragraphs."""
    pieces, budget = [], max_chars
    for para in _PARAGRAPH.split(text):
        clean = natural_words(para) if mask else " ".join(para.split())
        if _has_letters(clean):
            pieces.append(clean[:budget])
            budget -= len(pieces[-1])
        if budget <= 0:
            break
    lid = identifier()
    if not pieces:  # nothing that reads as prose: the whole (masked) text decides
        language, score = lid.classify((natural_text(text) if mask else text)[:max_chars])
        return language, float(score)
    return _vote(lid.nb_classes, pieces, scorer()(pieces))


class LanguageFilter(DocFilter):
    """Keep documents in the listed languages with at least ``min_score`` probability
    (FineWeb kept English at fastText score >= 0.65; the default follows it)."""

    name = "language"

    class Params(RuleParams):
        keep: list[str] | None = Field(["en"], description="ISO 639-1 codes to keep; null "
                                       "keeps all")
        min_score: float | None = Field(0.65, ge=0, le=1, description="lowest probability of "
                                        "the identified language (FineWeb: 0.65); null "
                                        "disables")
        max_chars: int = Field(20_000, ge=100, description="characters scored (the first "
                               "paragraphs): a book's language shows in its first pages")
        mask_code: bool = Field(True, description="score the natural-language part only: "
                                "identifiers, code spans, paths, URLs and numbers masked")

    def keep(self, doc: Document) -> Verdict:
        p = self.params
        language, score = identify(doc.text, p.max_chars, p.mask_code)
        doc.language, doc.scores["language_score"] = language, float(score)
        if p.keep is not None and language not in p.keep:
            return Verdict.drop("not_in_keep_list", language=language, score=round(score, 4))
        if p.min_score is not None and score < p.min_score:
            return Verdict.drop("low_score", language=language, score=round(score, 4))
        return Verdict.ok(language=language, score=round(float(score), 4))


RULES = [LanguageFilter]
