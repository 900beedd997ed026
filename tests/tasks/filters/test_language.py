from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from lmforge.infra.make_sample import Prose
from lmforge.tasks.filters.language import (
    LanguageFilter,
    identifier,
    natural_text,
    natural_words,
    scorer,
)
from lmforge.tasks.schema import Document


def test_english_is_kept_with_language_and_score_stored() -> None:
    doc = Document.new("wikipedia", "x#1", " ".join(Prose(1).article("Arvel", 2)))
    verdict = LanguageFilter(keep=["en"]).keep(doc)
    assert verdict.keep and doc.language == "en" and doc.scores["language_score"] > 0.9


def test_other_languages_and_unsure_scores_are_dropped() -> None:
    german = Document.new("commoncrawl", "x#2", "Der Fluss fließt langsam durch das Tal, und "
                          "die Bauern bringen ihre Äpfel jeden Samstag auf den Markt.")
    verdict = LanguageFilter(keep=["en"]).keep(german)
    assert verdict.reason == "not_in_keep_list" and german.language == "de"
    assert LanguageFilter(keep=None, min_score=None).keep(german).keep
    unsure = Document.new("reddit", "x#3", "ok")
    verdict = LanguageFilter(keep=None, min_score=0.99).keep(unsure)
    assert verdict.reason == "low_score" and unsure.scores["language_score"] < 0.99


# The mask as it reads (tasks/filters/language.py compiles a faster form with the same matches)
PLAIN_MASK = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+\.\w+"
    r"|`[^`\n]*`"
    r"|\w+(?:[._:/\\-]\w+)+(?:\(\))?"
    r"|\b\w*[a-z][A-Z]\w*"
    r"|\b\w*_\w*"
    r"|\b\w*\d\w*"
    r"|\w+\(\)"
    r"|\b\w+=[^\s,)]*|\*{1,2}\w+"
    r"|[^\w\s]{2,}")
TRICKY = ["Call os.path.join(a, b) or open() with title=None, **options -> x == y */",
          "PyObject_New() in 3.11.7 at 0x7f; write to a.b@example.org or xhttp://a.b/c",
          "see https://docs.python.org/3/ and www.python.org. `x = 1` is code; foo->bar",
          "(mail:someone@host.de) well-known __init__ iPhone ÄÖÜ straße naïve café 12abc",
          "", "x", "@", "a@b", "a@b.c", "->@@", "«Bonjour», dit-il.", "e.g. i.e. U.S.A."]


def test_fast_mask_matches_the_plain_alternation() -> None:
    for text in TRICKY:
        assert natural_text(text) == PLAIN_MASK.sub(" ", text), text


def test_word_by_word_mask_equals_the_paragraph_mask_on_real_text() -> None:
    stdlib = sorted(Path(os.__file__).parent.glob("*.py"))[:40]  # real code nobody here wrote
    licences = sorted(Path("/usr/share/common-licenses").glob("*"))
    paragraphs = [*TRICKY, "a `b c` d", "x=1 y_z  AbC ()"]
    for path in stdlib + licences:
        if path.is_file():
            paragraphs += path.read_text(errors="replace").split("\n")
    assert len(paragraphs) > 10_000
    masked = 0
    for paragraph in paragraphs:
        expected = " ".join(natural_text(paragraph).split())
        assert natural_words(paragraph) == expected, paragraph
        masked += expected != " ".join(paragraph.split())
    assert masked > len(paragraphs) / 10


def test_paragraph_scorer_matches_py3langid() -> None:
    lid = identifier()
    pieces = [p for t in TRICKY for p in t.split(";")] + [
        "Der Fluss fließt langsam durch das Tal", "Быстрая коричневая лиса", "日本語のテキスト",
        "ABC DEF GHI", "!!! ???", " ", "a"]
    scores = scorer()(pieces)
    for piece, row in zip(pieces, scores, strict=True):
        expected = lid._decide(piece)
        assert np.allclose(row, expected, atol=1e-5), piece
        assert int(row.argmax()) == int(expected.argmax()), piece
