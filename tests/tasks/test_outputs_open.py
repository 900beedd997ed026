"""The curated Parquet contract opens in the tools users take it to: HF ``datasets`` (also
streaming), DuckDB, Polars and pandas, with the scores queryable by name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lmforge.tasks.schema import Document, scores_dict
from lmforge.tasks.shards import DocumentWriter


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    out = tmp_path / "curated"
    docs = [Document.new("wikipedia", "dump#1", "An article.", title="A", language="en",
                         created=datetime(2024, 1, 2, tzinfo=UTC),
                         scores={"language_score": 0.98, "toxicity": 0.01},
                         meta={"page_id": "1"}),
            Document.new("code", "repo#x.py", "print(1)\n")]  # no scores, no meta
    for i, doc in enumerate(docs):
        with DocumentWriter(out / f"part-{i:05d}.parquet") as w:
            w.write(doc)
    return out


def test_hf_datasets_loads_curated_output(curated: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_dir=str(curated), split="train")
    rows = sorted(ds, key=lambda r: r["source"])
    assert [r["source"] for r in rows] == ["code", "wikipedia"]
    assert scores_dict(rows[1]["scores"]) == {"language_score": 0.98, "toxicity": 0.01}
    assert rows[0]["scores"] == []
    streamed = datasets.load_dataset("parquet", data_dir=str(curated), split="train",
                                     streaming=True)
    assert sorted(r["id"] for r in streamed) == sorted(r["id"] for r in rows)
    assert len(datasets.Dataset.from_parquet(str(curated / "part-00000.parquet"))) == 1


def test_duckdb_polars_and_pandas_read_scores_by_name(curated: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    import pandas as pd

    glob = str(curated / "*.parquet")
    got = duckdb.sql(f"SELECT source, s.value FROM (SELECT source, unnest(scores) AS s "
                     f"FROM read_parquet('{glob}')) WHERE s.name = 'toxicity'").fetchall()
    assert got == [("wikipedia", 0.01)]
    frame = polars.read_parquet(glob).explode("scores").unnest("scores").drop_nulls("name")
    assert dict(zip(frame["name"], frame["value"], strict=True)) == {
        "language_score": 0.98, "toxicity": 0.01}
    pdf = pd.read_parquet(curated)
    assert sorted(pdf["source"]) == ["code", "wikipedia"]
