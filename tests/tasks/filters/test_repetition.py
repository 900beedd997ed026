"""Gopher repetition rules, and the fast n-gram measures against a plain reference."""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from lmforge.infra.make_sample import FACTS, Prose
from lmforge.tasks.filters.repetition import (
    DuplicateLinesFilter,
    DuplicateNGramsFilter,
    DuplicateParagraphsFilter,
    TopNGramsFilter,
)
from lmforge.tasks.filters.text import (
    _PROSE_START,
    duplicate_ngram_chars,
    is_code_line,
    tokens,
    top_ngram_chars,
)
from lmforge.tasks.schema import Document


def doc(text: str) -> Document:
    return Document.new("commoncrawl", "x#1", text)


def ref_top(toks: list[str], n: int) -> int:
    """datatrove's definition: Counter.most_common(1), which breaks ties by first occurrence."""
    grams = Counter(" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count


def ref_dup(toks: list[str], n: int) -> int:
    seen, chars, i = set(), 0, 0
    while i < len(toks) - n + 1:
        gram = "".join(toks[i:i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


@pytest.mark.parametrize("seed", range(8))
def test_fast_ngram_measures_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    vocab = ["the", "mill", "river", "old", "bridge", ",", ".", "town", "of", "a"]
    text = " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 400)))
    for mode, toks in (("datatrove", list(tokens(text))), ("whitespace", text.split())):
        for n in (2, 3, 4):
            assert top_ngram_chars(text, n, mode) == ref_top(toks, n)
        for n in range(5, 11):
            assert duplicate_ngram_chars(text, n, mode) == ref_dup(toks, n)
        # asked out of order (another cache entry: a trailing space): each n from scratch or
        # from the repeats of n - 1, whichever is known
        order = [8, 3, 9, 5, 2, 10, 4, 6, 7]
        rng.shuffle(order)
        for n in order:
            measure = top_ngram_chars if n < 5 else duplicate_ngram_chars
            assert measure(text + " ", n, mode) == (ref_top if n < 5 else ref_dup)(toks, n)


def test_prose_passes_and_copy_pasted_text_fails() -> None:
    prose = " ".join(Prose(3).article("Arvel", 4))
    assert all(f.keep(doc(prose)).keep for f in (
        DuplicateParagraphsFilter(), DuplicateLinesFilter(),
        TopNGramsFilter(), DuplicateNGramsFilter()))
    spam = (Prose(4).paragraph(FACTS, 3) + " ") * 4
    verdict = DuplicateNGramsFilter(dup_ngrams={5: 0.15}).keep(doc(spam))
    assert verdict.reason == "dup_5gram" and verdict.values["fraction"] > 0.5


def test_duplicate_lines_and_paragraphs() -> None:
    lines = "\n".join(["Buy now and save."] * 4 + ["A real sentence here.", "Another one."])
    assert DuplicateLinesFilter().keep(doc(lines)).reason == "dup_lines"
    paras = "\n\n".join(["Same paragraph text here."] * 3 + ["Other words.", "More words."])
    assert DuplicateParagraphsFilter().keep(doc(paras)).reason == "dup_paragraphs"
    chars = "\n\n".join(["x" * 300, "x" * 300, "short one", "short two", "short three",
                         "short four", "short five", "short six", "short seven", "eight"])
    assert DuplicateParagraphsFilter().keep(doc(chars)).reason == "dup_paragraph_chars"
    assert DuplicateLinesFilter(max_dup_line_fraction=None,
                                max_dup_line_char_fraction=None).keep(doc(lines)).keep


def test_list_markers_left_by_extraction_are_not_repeated_lines() -> None:
    # trafilatura renders a definition list as "- " lines before each entry (the Python
    # documentation's API pages): markup, not text that repeats
    entry = "- \nint PyLong_CheckN(PyObject *p)\n- Return true if its argument is type N."
    text = "\n".join(entry.replace("N", str(i)) for i in range(20))
    assert DuplicateLinesFilter().keep(doc(text)).keep
    assert DuplicateLinesFilter(ignore_markup_lines=False).keep(doc(text)).reason == \
        "dup_lines"


def test_top_ngram_threshold() -> None:
    text = "big sale " * 30 + "and some other words to dilute the text a little bit"
    verdict = TopNGramsFilter(top_ngrams={2: 0.2}).keep(doc(text))
    assert verdict.reason == "top_2gram"
    assert TopNGramsFilter(top_ngrams={2: 0.99}).keep(doc(text)).keep
    assert not TopNGramsFilter.Params(top_ngrams={}).active()  # an empty table: no rule


# ``is_code_line`` as one regular expression searched over the line (how it was first written):
# the split into an end test and an anchored match must decide every line the same way.
PLAIN_CODE_LINE = re.compile(
    r"[;{}]\s*$"
    r"|^\s*(?:\$|>>>|\.\.\.)\s"
    r"|^\s*(?:#include|#define|@\w+$)"
    r"|^\s*(?:import|from\s+[\w.]+\s+import|def|class|return|static|typedef|struct"
    r"|elif|else|try|except|finally|while|for|if|with|yield|raise)\b(?:.*[:;({]|\s+\S+)?\s*$"
    r"|^\s*[\w.\[\]'\"]+\s*[-+*/|&]?=\s*\S"
    r"|^\s*[\w.]+\(.*\)[;:,]?\s*$"
    r"|^\s+[\w.'\"=\[\](){},:\s-]+,\s*$")


def test_code_lines_are_those_of_the_plain_expression_on_real_text() -> None:
    stdlib = sorted(Path(os.__file__).parent.glob("*.py"))[:60]  # real code nobody here wrote
    licences = sorted(Path("/usr/share/common-licenses").glob("*"))
    lines = ["", " ", ";", "\t}\u00a0", "a;\nb", "x = 1;", "If the value is set;", "  f(a),"]
    for path in stdlib + licences:
        if path.is_file():
            lines += path.read_text(errors="replace").split("\n")
    assert len(lines) > 20_000
    decided = [is_code_line(line) for line in lines]
    assert 0.2 < sum(decided) / len(lines) < 0.9  # both kinds are there
    assert decided == [bool(PLAIN_CODE_LINE.search(line)) and not _PROSE_START.match(line)
                       for line in lines]
