"""Real prose that nobody wrote for these tests is kept; junk of each kind is removed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lmforge.tasks.base import run_steps
from lmforge.tasks.filters.quality import QualityPlan, build_quality_steps
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document

from benchmarks.corpus import web_documents

LICENSES = Path("/usr/share/common-licenses")  # Debian's base-files: GPL, Apache, MPL, ...


def run(kind: str, texts: dict[str, str]) -> tuple[set[str], dict[str, str]]:
    steps = build_quality_steps(QualityPlan.model_validate({}).for_source(kind))
    reasons: dict[str, str] = {}
    docs = [Document.new(kind, name, text) for name, text in texts.items()]
    kept = run_steps(docs, steps, Tally("q"), lambda d, r, v: reasons.__setitem__(d.location, r))
    return {d.location for d in kept}, reasons


@pytest.mark.skipif(not LICENSES.is_dir(), reason="no licence texts on this machine")
def test_licence_texts_are_kept_as_reference_prose() -> None:
    texts = {p.name: p.read_text(errors="replace") for p in LICENSES.iterdir() if p.is_file()}
    assert len(texts) >= 5
    kept, reasons = run("wikipedia", texts)
    assert kept == set(texts), reasons


def test_generated_junk_is_removed_and_articles_kept() -> None:
    docs = web_documents(400, seed=3)
    kept, reasons = run("commoncrawl", {str(i): t for i, t in enumerate(docs)})
    spam = [str(i) for i, t in enumerate(docs) if t.startswith(("cheap", "deals", "best",
                                                                "price", "buy", "now",
                                                                "online", "free"))]
    lorem = [str(i) for i, t in enumerate(docs) if t.startswith("Lorem ipsum")]
    assert spam and not set(spam) & kept
    assert lorem and {reasons[i] for i in lorem} == {"c4/lorem_ipsum"}
    assert 0.4 < len(kept) / len(docs) < 0.8
