"""The curation stages called directly (no Prefect) on the sample corpus in its real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from lmforge.infra.settings import SAMPLE_DIR
from lmforge.tasks.curate import STAGES, CurateConfig, curate_in_process, filter_shard
from lmforge.tasks.manifest import write_manifest
from lmforge.tasks.readers import Source, plan_shards
from lmforge.tasks.report import StageReport
from lmforge.tasks.shards import Layout
from pydantic import TypeAdapter

from tests.tasks.test_pii import PLANTED

SOURCES = TypeAdapter(list[Source]).validate_python([
    {"kind": "wikipedia", "paths": [f"{SAMPLE_DIR}/wikipedia/*.xml.bz2"]},
    {"kind": "commoncrawl", "paths": [f"{SAMPLE_DIR}/commoncrawl/*.warc.gz"]},
    {"kind": "reddit", "paths": [f"{SAMPLE_DIR}/reddit/*.zst"]},
    {"kind": "books", "paths": [f"{SAMPLE_DIR}/books/*.txt"]},
    {"kind": "code", "paths": [f"{SAMPLE_DIR}/code/*"]},
])
CFG = CurateConfig.model_validate({"pii": {"ner_model": None}})


def curate(root: Path) -> list[StageReport]:
    reports, accounting = curate_in_process(SOURCES, CFG, root)
    assert accounting["ok"], accounting["problems"]
    write_manifest(Layout(root), reports, "test", {"accounting": accounting})
    return reports


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> tuple[Path, list[StageReport]]:
    root = tmp_path_factory.mktemp("curate")
    return root, curate(root)


def test_output_contract(curated) -> None:
    root, _ = curated
    table = ds.dataset(root / "curated", format="parquet").to_table()
    assert {"id", "source", "text", "location", "scores", "meta"} <= set(table.column_names)
    assert set(table.column("source").to_pylist()) == {"books", "code", "commoncrawl",
                                                       "reddit", "wikipedia"}
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    rejected = ds.dataset(root / "rejected", format="parquet").to_table()
    assert {"id", "source", "reason", "location"} <= set(rejected.column_names)
    reasons = set(rejected.column("reason").to_pylist())
    for expected in ("ingest:wikipedia/redirect", "ingest:reddit/bot_author",
                     "quality:language/not_in_keep_list", "quality:gopher_rep/top_3gram",
                     "dedup:exact", "dedup:minhash",
                     "toxicity:toxicity/toxic", "ingest:code/license"):
        assert expected in reasons
    assert all(":" in r for r in reasons)
    quarantine = ds.dataset(root / "quarantine", format="parquet").to_table().to_pylist()
    assert {q["reason"] for q in quarantine} == {
        "wikipedia/truncated_stream", "reddit/invalid_json", "reddit/invalid_utf8",
        "commoncrawl/broken_record"}


def test_ids_are_stable_across_reruns(curated, tmp_path) -> None:
    root, _ = curated
    again = tmp_path / "again"
    curate(again)
    first = sorted(ds.dataset(root / "curated").to_table().column("id").to_pylist())
    second = sorted(ds.dataset(again / "curated").to_table().column("id").to_pylist())
    assert first == second


def test_counts_balance_and_chain(curated) -> None:
    _, reports = curated
    for report in reports:
        for source, c in report.sources.items():
            assert c.docs_in == c.docs_out + c.docs_dropped, (report.stage, source)
    by = {r.stage: r.total for r in reports}
    assert by["quality"].docs_in == by["ingest"].docs_out
    assert by["dedup"].docs_in == by["quality"].docs_out
    assert by["classifier"].docs_in == by["dedup"].docs_out
    assert by["pii"].docs_in == by["classifier"].docs_out
    assert by["toxicity"].docs_in == by["pii"].docs_out


def test_fused_stages_report_their_own_seconds(curated) -> None:
    """Stages that run in one pass over a shard (ingest+quality; classifier+PII+toxicity)
    each report the time inside their own steps, not the pass's: the seconds differ, and
    the scrub pass's stages plus its I/O make up the pass."""
    _, reports = curated
    by = {r.stage: r for r in reports}
    assert by["ingest"].seconds != by["quality"].seconds
    assert len({by[s].seconds for s in ("classifier", "pii", "toxicity")}) == 3
    scrub = sum(by[s].seconds for s in ("classifier", "pii", "toxicity"))
    assert by["pii"].seconds > by["classifier"].seconds  # no classifier configured: ~0 s
    assert scrub + by["pii"].extra["io_seconds"] == pytest.approx(
        by["pii"].extra["pass_seconds"], abs=0.01 * len(by["pii"].sources) + 0.05)
    assert by["ingest"].seconds + by["quality"].seconds == pytest.approx(
        by["quality"].extra["pass_seconds"], abs=0.05)


def test_manifest_matches_outputs(curated) -> None:
    root, reports = curated
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["outputs"]["curated"]["documents"] == reports[-1].total.docs_out
    assert list(manifest["stages"]) == list(STAGES)
    assert manifest["sources"]["reddit"]["ingest"]["dropped"]["reddit/deleted"] == 2
    rejected_rows = ds.dataset(root / "rejected").count_rows()
    dropped = sum(r.total.docs_dropped for r in reports)
    assert manifest["outputs"]["rejected"]["documents"] == rejected_rows == dropped


def test_no_planted_pii_survives_anywhere(curated) -> None:
    root, _ = curated
    planted = [*PLANTED.values(), "bookings@harwick-inn.example.com", "maps.collector@example.net",
               "ada.brenner@westmark-tools.example.org", "10.20.30.40", "+1 415 555 0199",
               "office@glenmere-tourism.example.org", "hunter2"]
    for path in root.rglob("*"):
        if path.is_file() and "_work" not in path.parts:
            blob = path.read_bytes()
            if path.suffix == ".parquet":
                blob = json.dumps(ds.dataset(path).to_table().to_pylist(), default=str).encode()
            for value in planted:
                assert value.encode() not in blob, (value, path)


def test_rerun_skips_finished_shards(curated) -> None:
    root, _ = curated
    part = plan_shards(SOURCES)[0]
    shard_file = root / "_work" / "filtered" / "part-00000.parquet"
    before = shard_file.stat().st_mtime_ns
    reports = filter_shard(part, SOURCES[0], CFG, root)
    assert shard_file.stat().st_mtime_ns == before  # not rewritten
    assert reports["ingest"].total.docs_out > 0


def test_changed_config_recomputes_the_shard(curated, tmp_path) -> None:
    root, _ = curated
    part = plan_shards(SOURCES)[0]
    stricter = CFG.model_copy(update={"quality": CFG.quality.model_validate(
        {"wikipedia": {"gopher": {"min_words": 10_000}}})})
    reports = filter_shard(part, SOURCES[0], stricter, root)
    assert reports["quality"].total.docs_out == 0
    filter_shard(part, SOURCES[0], CFG, root)  # restore for the other tests


def test_corrupted_intermediate_is_recomputed_never_consumed(curated) -> None:
    """A finished shard whose output no longer has the recorded SHA-256 (a worker died while
    something else wrote there, a bad disk) is recomputed; the result equals the original."""
    import pyarrow.parquet as pq

    root, _ = curated
    part = plan_shards(SOURCES)[0]
    shard_file = root / "_work" / "filtered" / "part-00000.parquet"
    original = pq.read_table(shard_file).to_pylist()
    report = StageReport.load(Layout(root).report("quality", 0))
    assert report.extra["outputs"]["_work/filtered/part-00000.parquet"] is not None
    data = bytearray(shard_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    shard_file.write_bytes(bytes(data))
    filter_shard(part, SOURCES[0], CFG, root)
    assert pq.read_table(shard_file).to_pylist() == original
    shard_file.unlink()  # a lost file is recomputed too
    filter_shard(part, SOURCES[0], CFG, root)
    assert pq.read_table(shard_file).to_pylist() == original


def test_crash_mid_shard_leaves_no_partial_output(tmp_path, monkeypatch) -> None:
    import lmforge.tasks.curate as curate_mod

    part = next(s for s in plan_shards(SOURCES) if s.kind == "commoncrawl")

    def boom(docs, *args, **kwargs):
        next(iter(docs))  # the reader and the writers are mid-stream
        raise RuntimeError("worker killed")

    monkeypatch.setattr(curate_mod, "signature_table", boom)
    with pytest.raises(RuntimeError):
        filter_shard(part, SOURCES[part.source_index], CFG, tmp_path)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_webtext_allowlist_from_this_runs_reddit(tmp_path) -> None:
    from lmforge.tasks.curate import webtext_list
    from lmforge.tasks.readers.urls import load_url_set
    from lmforge.tasks.shards import iter_documents

    sources = TypeAdapter(list[Source]).validate_python([
        {"kind": "reddit", "paths": [f"{SAMPLE_DIR}/reddit/RS_*.zst"]},
        {"kind": "commoncrawl", "paths": [f"{SAMPLE_DIR}/webtext/*.warc.gz"]},
    ])
    shards = plan_shards(sources)
    filter_shard(shards[0], sources[0], CFG, tmp_path)
    listed = webtext_list(tmp_path)
    assert listed is not None and listed.parent == tmp_path / "webtext"
    allow = load_url_set(str(listed))
    crawl = sources[1].model_copy(update={"url_allowlist": str(listed)})
    reports = filter_shard(shards[1], crawl, CFG, tmp_path)
    kept = {d.url for d in iter_documents(tmp_path / "_work/filtered/part-00001.parquet")}
    assert kept and kept <= allow
    ingest = reports["ingest"].sources["commoncrawl"]
    assert ingest.dropped["commoncrawl/url_not_in_allowlist"] > 0


def test_small_inputs_are_packed_into_shards(tmp_path) -> None:
    books = TypeAdapter(list[Source]).validate_python([
        {"kind": "books", "paths": [f"{SAMPLE_DIR}/books/*.txt"], "split_bytes": 40_000},
        {"kind": "reddit", "paths": [f"{SAMPLE_DIR}/reddit/*.zst"], "split_bytes": 1024}])
    shards = plan_shards(books)
    assert [(s.kind, len(s.parts)) for s in shards] == [
        ("books", 2), ("books", 1), *[("reddit", 1)] * (len(shards) - 2)]
    assert [s.index for s in shards] == list(range(len(shards)))


def test_explain_shows_every_rule_with_measured_values(curated) -> None:
    from lmforge.tasks.explain import explain

    root, _ = curated
    rows = ds.dataset(root / "rejected").to_table().to_pylist()
    dropped = next(r for r in rows if r["reason"] == "quality:gopher_rep/top_3gram")
    result = explain(root, dropped["id"], SOURCES, CFG)
    assert result.status == "removed" and result.reason == "quality:gopher_rep/top_3gram"
    failed = [r for r in result.rules if not r.passed]
    assert failed and failed[0].rule == "gopher_rep/top_3gram"
    assert failed[0].values["fraction"] > 0.18
    assert any(r.rule == "LanguageFilter" and r.values["language"] == "en" for r in result.rules)

    kept_id = ds.dataset(root / "curated").to_table(
        filter=ds.field("source") == "commoncrawl").column("id")[0].as_py()
    kept = explain(root, kept_id, SOURCES, CFG)
    assert kept.status == "kept" and all(r.passed for r in kept.rules)
    assert "toxicity" in kept.later["scores"]

    toxic = next(r for r in rows if r["reason"] == "toxicity:toxicity/toxic")
    why = explain(root, toxic["id"], SOURCES, CFG).later["toxicity"]
    detail = json.loads(toxic["detail"])
    assert why["toxic_share"] == detail["toxic_share"] > why["max_toxic_share"]
    worst = why["passages"][0]
    # the passage that decided, its text and score, as the stage recorded it
    assert [worst["start"], worst["end"], worst["score"]] == detail["spans"][0]
    assert worst["text"].strip() and worst["score"] > min(why["thresholds"].values())

    dup = next(r for r in rows if r["reason"] == "dedup:minhash")
    assert explain(root, dup["id"], SOURCES, CFG).later["detail"]["survivor"]
    assert explain(root, "0" * 32, SOURCES, CFG).status == "not found"
