"""Curation decisions on real text against the labelled judgment sets
(``benchmarks/judgments/``; ``benchmarks/decisions.py`` prints the full tables). Each test pins
a defect that real text showed, on the real excerpt."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from lmforge.infra.real_corpora import default_cache, fetch
from lmforge.tasks.curate import CurateConfig
from lmforge.tasks.filters.c4 import C4LineCleaner
from lmforge.tasks.filters.gopher import GopherAlphaWordsFilter
from lmforge.tasks.filters.language import (
    _PARAGRAPH,
    identifier,
    identify,
    natural_text,
    scorer,
)
from lmforge.tasks.filters.quality import build_quality_steps
from lmforge.tasks.pii import PiiConfig, PiiScrubber
from lmforge.tasks.schema import Document
from lmforge.tasks.toxicity import build_toxicity_steps

from benchmarks.decisions import (
    CONTACT_ENTITIES,
    TARGETS,
    Decision,
    decide_all,
    judged_documents,
    labelled_documents,
    pii_scores,
    score,
)
from tests.tasks.filters.test_language import PLAIN_MASK

pytestmark = pytest.mark.real
CHAPTER = re.compile(r"^CHAPTER [IVXLC]+\.?$", re.MULTILINE)


@pytest.fixture(scope="module")
def cache() -> Path:
    if shutil.which("apt-get") is None and not (default_cache() / "sources.json").exists():
        pytest.skip("the real corpora come from Debian's archive: apt-get is not available")
    return fetch(default_cache())


@pytest.fixture(scope="module")
def docs(cache: Path) -> list[Document]:
    return labelled_documents(cache)


@pytest.fixture(scope="module")
def decisions(cache: Path, docs: list[Document]) -> list[Decision]:
    return decide_all(cache, docs=docs)


def test_targets_per_group(decisions: list[Decision]) -> None:
    scores = score(decisions)
    for group in ("wikipedia", "novels", "docs-prose", "code"):
        s = scores[group]
        assert s.false_drop_rate <= TARGETS["false_drop"], (group, s.false_drops)
        assert s.false_keep_rate <= TARGETS["false_keep"], group
    # web: 12 pages to keep; the one false drop is IANA's protocol-registry table (Gopher's
    # duplicate-line characters, 0.22 > 0.2: the same policy cell in many rows)
    assert sum(scores["web"].false_drops.values()) <= 1
    assert scores["web"].false_keep_rate <= TARGETS["false_keep"]


def test_no_novel_is_dropped_and_books_lose_at_most_spans(decisions: list[Decision]) -> None:
    novels = [d for d in decisions if d.group == "novels"]
    assert len(novels) == 7 and all(d.removed_by is None for d in novels)


def test_alphabetic_words_counted_as_in_the_paper(decisions: list[Decision]) -> None:
    """Whitespace words (Gopher, App. A): clean technical prose and biographies pass; counting
    punctuation tokens as words (datatrove) drops dozens of the same documents."""
    keep = [d for d in decisions if d.label == "keep" and d.group != "code"]
    paper, tokens = GopherAlphaWordsFilter(), GopherAlphaWordsFilter(word_tokenizer="datatrove")
    # the one exception: Python's PEG grammar listing, where 62% of the whitespace words hold a
    # letter; the paper's rule drops it as it would any table of symbols
    assert [d.doc.url for d in keep if not paper.keep(d.doc).keep] == [
        "https://docs.python.org/3.11/reference/grammar.html"]
    assert sum(not tokens.keep(d.doc).keep for d in keep) > 300  # of 567


def test_language_id_holds_on_technical_english(decisions: list[Decision]) -> None:
    docs = [d for d in decisions if d.group in ("docs-prose", "docs-reference")]
    assert len(docs) > 400
    assert not [d.doc.url for d in docs if d.label == "keep"
                and (d.removed_by or "").startswith("quality:language/")]


def test_chapter_headings_survive_the_all_caps_rule(docs: list[Document]) -> None:
    steps = build_quality_steps(CurateConfig().quality.for_source("books"))
    for title, chapters in (("emma.txt", 55), ("mansfieldpark.txt", 48)):
        doc = next(d for d in docs if d.location.startswith(title))
        assert len(CHAPTER.findall(doc.text)) == chapters
        text = doc.text
        for step in steps:
            if hasattr(step, "rewrite"):
                text = step.rewrite(Document.new("books", doc.location, text)).text
        assert len(CHAPTER.findall(text)) == chapters, title


def test_code_is_not_scored_by_a_tweet_classifier(docs: list[Document]) -> None:
    code = [d for d in docs if d.source == "code" and "proc.kill()" in d.text]
    assert code
    steps = build_toxicity_steps(CurateConfig().toxicity)
    steps[0].prepare(code)
    assert all(steps[0].keep(d).values == {"scored": False} for d in code)


def test_pii_rejects_isbns_versions_networks_and_issue_numbers(cache: Path,
                                                               docs: list[Document]) -> None:
    scrubber = PiiScrubber(PiiConfig(ner_model=None))
    wiki = [d for d in judged_documents(cache) if d.source == "wikipedia" and "ISBN" in d.text]
    scrubber.prepare(wiki)
    found = 0
    for doc in wiki:
        isbns = re.findall(r"ISBN(?:-1[03])?:?\s*([\d-]{10,17}X?)", doc.text)
        found += len(isbns)
        after = scrubber.rewrite(doc).text
        assert "<PHONE_NUMBER>" not in after, doc.title
        assert all(isbn in after for isbn in isbns), doc.title
    assert len(wiki) >= 5 and found >= 40  # 48 ISBNs in 5 articles (10- and 13-digit)
    code = [d for d in docs if d.source == "code" and "127.0.0.0/8" in d.text]
    assert code  # pip's network/session.py: a network range in code
    scrubber.prepare(code)
    assert all("127.0.0.0/8" in scrubber.rewrite(d).text for d in code)
    # pip's changelog and docs (documentation, so not in the code source): read as prose
    pip = cache / "code" / "pip-26.3"
    for path, needle in (("NEWS.rst", "(#1642, #1641)"),
                         ("docs/html/reference/installation-report.md", ">=3.7.4.3")):
        doc = Document.new("commoncrawl", path, (pip / path).read_text(encoding="utf-8"))
        assert needle in doc.text
        scrubber.prepare([doc])
        assert needle in scrubber.rewrite(doc).text, needle


def test_pii_precision_and_recall_per_contact_entity(cache: Path, docs: list[Document]) -> None:
    scores = pii_scores(cache, docs)
    seen = 0
    for entity in CONTACT_ENTITIES:
        tp, fp, fn = scores["lmforge"][entity]
        ptp, _, pfn = scores["presidio"][entity]
        if tp + fn == 0:
            continue
        seen += 1
        assert tp / (tp + fp) >= 0.95, entity
        assert tp / (tp + fn) >= ptp / (ptp + pfn) - 0.01, entity
    assert seen >= 4


def test_c4_line_rules_see_written_lines_not_wrapped_ones(cache: Path) -> None:
    """A hard-wrapped novel as a user's own reader would pass it (Project Gutenberg wraps at
    ~70 columns; our books reader joins the lines itself): judged line by physical line, C4
    removes every line that stops mid-sentence and leaves fragments; judged on logical lines,
    the paragraphs stay whole, those ending in ";" included. What it still removes is
    paragraphs that end without terminal punctuation in the book itself ("as he had said at
    dinner," before a quotation) and the heading."""
    emma = (cache / "books" / "emma.txt").read_text(encoding="utf-8")
    chapter = emma[emma.index("CHAPTER I\n"):emma.index("CHAPTER II\n")]
    words = len(chapter.split())

    def kept(logical: bool) -> str:
        return C4LineCleaner(logical_lines=logical).rewrite(
            Document.new("books", "emma", chapter)).text

    physical, logical = kept(False), kept(True)
    assert len(physical.split()) < 0.2 * words  # fragments: sentences lose wrapped parts
    assert len(logical.split()) > 0.9 * words
    sentence = "Emma Woodhouse, handsome, clever, and rich, with a comfortable home"
    assert sentence in " ".join(logical.split()) and sentence not in " ".join(physical.split())


# The language step's fast paths against what they replace, on real text: the masking regex
# against its plain alternation and the one-pass paragraph scorer against py3langid's own
# per-paragraph scoring, on every judged document (Wikipedia in English and Bulgarian, the
# novels, the Python documentation, web pages, code) and on CPython's sources.
@pytest.fixture(scope="module")
def texts(cache: Path, docs: list[Document]) -> list[str]:
    code = sorted((cache / "code" / "cpython").rglob("*.py"))[:150]
    return [d.text for d in docs] + [p.read_text(encoding="utf-8", errors="replace")
                                     for p in code]


def test_mask_is_the_plain_alternation(texts: list[str]) -> None:
    paragraphs = [p for t in texts for p in _PARAGRAPH.split(t)]
    assert len(paragraphs) > 10_000
    assert [natural_text(p) for p in paragraphs] == [PLAIN_MASK.sub(" ", p) for p in paragraphs]


def test_scorer_is_py3langid(texts: list[str]) -> None:
    lid, score = identifier(), scorer()
    languages = set()
    for text in texts[::3]:
        pieces = [" ".join(natural_text(p).split()) for p in _PARAGRAPH.split(text)][:40]
        pieces = [p for p in pieces if p]
        if not pieces:
            continue
        ours = score(pieces)
        theirs = np.stack([lid._decide(p) for p in pieces])
        assert np.abs(ours - theirs).max() < 1e-4  # float32 sums, another order
        assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()
        languages.add(identify(text)[0])
    assert {"en", "bg"} <= languages  # more than one language and script went through
