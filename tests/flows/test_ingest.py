"""Incremental ingest on a separately started Dask scheduler with two `dask worker` processes:
the second nightly run on the same landing directory does nothing, a run with new files
processes only them and dedups them against every earlier batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lmforge.flows.config import RunConfig, load_config
from lmforge.flows.ingest import ingest_new
from lmforge.flows.launch import platform
from lmforge.flows.tokens import tokenize_corpus
from lmforge.infra.settings import SAMPLE_DIR
from lmforge.tasks.ingest import Ledger, version_shards
from prefect_dask import DaskTaskRunner

pytestmark = pytest.mark.e2e


def _config(landing: Path, out: Path) -> RunConfig:
    base = load_config(output=out)
    return RunConfig.model_validate({
        **base.model_dump(), "sources": [
            {"kind": "books", "paths": [str(landing / "books" / "*.txt")]},
            {"kind": "wikipedia", "paths": [str(landing / "wikipedia" / "*.xml.bz2")]}],
        "curate": {**base.curate.model_dump(), "pii": {"ner_model": None}},
        "tracking": {"experiment": "ingest"}})


def _ids(root: Path) -> list[str]:
    return sorted(i for p in sorted((root / "curated").glob("part-*.parquet"))
                  for i in pq.read_table(p, columns=["id"]).column("id").to_pylist())


def test_nightly_ingest_processes_only_new_inputs(services_up, external_dask, tmp_path) -> None:
    landing, out = tmp_path / "landing", tmp_path / "out"
    (landing / "books").mkdir(parents=True)
    (landing / "wikipedia").mkdir()
    for book in ("pg90001.txt", "pg90002.txt"):
        shutil.copy(SAMPLE_DIR / "books" / book, landing / "books" / book)
    shutil.copy(SAMPLE_DIR / "wikipedia" / "enwiki-20240301-pages-articles1.xml.bz2",
                landing / "wikipedia")
    cfg = _config(landing, out)
    run = ingest_new.with_options(task_runner=DaskTaskRunner(address=external_dask.address))
    with platform():
        first = run(cfg)
        assert first["version"] == 1 and first["new_inputs"] == 3 and first["documents"] > 0
        ids = _ids(out)
        assert len(ids) == first["documents"] == len(set(ids))
        stamp = {p: p.stat().st_mtime_ns for p in (out / "curated").iterdir()}

        again = run(cfg)  # the next night, nothing arrived
        assert again == {"version": 1, "new_inputs": 0, "documents": None}
        assert {p: p.stat().st_mtime_ns for p in (out / "curated").iterdir()} == stamp

        # a new book, and an old one re-uploaded under another name
        shutil.copy(SAMPLE_DIR / "books" / "pg90003.txt", landing / "books")
        shutil.copy(SAMPLE_DIR / "books" / "pg90001.txt", landing / "books" / "copy-of-1.txt")
        second = run(cfg)
    assert second["version"] == 2 and second["new_inputs"] == 2
    batch = json.loads((out / "ingest" / "batches" / "00002" / "manifest.json").read_text())
    assert batch["stages"]["ingest"]["docs_in"] == 2  # only the two new files were read
    dedup = batch["stages"]["dedup"]
    assert dedup["docs_in"] - dedup["docs_out"] == 1  # the copy: a duplicate of batch 1
    ids2 = _ids(out)
    assert set(ids) < set(ids2) and len(ids2) == len(set(ids2)) == len(ids) + 1
    ledger = Ledger(out).entries()
    assert sorted(e.batch for e in ledger) == [1, 1, 1, 2, 2]
    assert all(e.checksum.startswith("sha256:") for e in ledger)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["outputs"]["curated"]["documents"] == len(ids2)

    # a run pinned to version 1 tokenizes exactly that version's shards, whatever came later
    pinned = RunConfig.model_validate({**cfg.model_dump(), "dataset": {
        **cfg.dataset.model_dump(), "curated_version": 1}})
    with platform():
        tokens = json.loads(tokenize_corpus.with_options(task_runner=DaskTaskRunner(
            address=external_dask.address))(pinned).read_text())
    v1 = json.loads((out / "ingest" / "versions" / "v00001.json").read_text())
    assert len(tokens["shards"]) == len(v1["shards"]) < manifest["outputs"]["curated"]["shards"]
    docs = sum(tokens["splits"][s]["documents"] for s in tokens["splits"])
    assert docs + sum(tokens["contaminated"].values()) == first["documents"]
    assert tokens["curated_version"] == version_shards(out, 1)[1]
    with pytest.raises(FileNotFoundError, match=r"committed: \[1, 2\]"):
        version_shards(out, 3)
    shard = out / v1["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes() + b"x")  # a committed shard changed afterwards
    with pytest.raises(ValueError, match="differs from the shard committed"):
        version_shards(out, 1)
