"""Every input file and record is somewhere, or the run says where the numbers differ."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from lmforge.infra.settings import SAMPLE_DIR
from lmforge.tasks.accounting import AccountingError, check, reconcile
from lmforge.tasks.curate import CurateConfig, curate_in_process
from lmforge.tasks.readers import Source
from lmforge.tasks.shards import Layout
from pydantic import TypeAdapter

CFG = CurateConfig.model_validate({"pii": {"ner_model": None}, "toxicity": None})


def _sources(*paths: Path) -> list:
    return TypeAdapter(list[Source]).validate_python(
        [{"kind": "commoncrawl", "paths": [str(p) for p in paths]}])


def test_a_file_that_yields_nothing_is_quarantined_with_what_was_seen(tmp_path) -> None:
    empty = tmp_path / "in" / "requests-only.warc.gz"
    empty.parent.mkdir()
    record = (b"WARC/1.0\r\nWARC-Type: request\r\nWARC-Record-ID: <urn:uuid:1>\r\n"
              b"Content-Length: 0\r\nWARC-Target-URI: http://example.org/\r\n\r\n\r\n\r\n")
    empty.write_bytes(gzip.compress(record))
    good = SAMPLE_DIR / "commoncrawl" / "CC-MAIN-20240301-00000.warc.gz"
    reports, accounting = curate_in_process(_sources(empty, good), CFG, tmp_path / "out")
    assert accounting["ok"], accounting["problems"]
    rows = ds.dataset(tmp_path / "out" / "quarantine").to_table().to_pylist()
    mine = [r for r in rows if r["file"].endswith("requests-only.warc.gz")]
    assert [r["reason"] for r in mine] == ["commoncrawl/no_documents"]
    assert "seen request record: 1" in mine[0]["detail"]
    inputs = reports[0].extra["inputs"]
    assert inputs[empty.as_uri()]["quarantined"] == 1
    assert inputs[good.as_uri()]["documents"] > 0


def test_a_lost_document_fails_the_run(tmp_path) -> None:
    good = SAMPLE_DIR / "commoncrawl" / "CC-MAIN-20240301-00000.warc.gz"
    reports, accounting = curate_in_process(_sources(good), CFG, tmp_path)
    assert accounting["ok"]
    rejected = sorted((tmp_path / "rejected").glob("quality-part-*.parquet"))
    assert rejected
    rejected[0].unlink()  # documents removed by the quality rules, now unaccounted for
    again = reconcile(Layout(tmp_path), reports)
    assert not again["ok"]
    assert any("rejected in the output files" in p for p in again["problems"])
    with pytest.raises(AccountingError, match="does not add up"):
        check(again)
