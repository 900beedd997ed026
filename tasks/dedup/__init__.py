"""Exact, URL and MinHash-LSH near-duplicate removal across every shard and source, on Dask,
incremental across runs.

:func:`signature_table` runs per shard inside the filtering pass; :func:`find_duplicates`
clusters all signatures (and those of an incremental index) on the Dask cluster and writes the
duplicates, each with its survivor and reason (``exact``: same normalised text as its survivor,
``url``: same page URL, ``minhash``: near duplicate), partitioned so that every shard reads only
its own.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from lmforge.tasks.dedup.cluster import (
    KIND_MINHASH,
    candidate_edges,
    components_local,
    connected_components,
    keys_frame,
    survivors,
    verify_edges,
)
from lmforge.tasks.dedup.index import DedupIndex
from lmforge.tasks.dedup.minhash import (
    MinHashConfig,
    MinHasher,
    candidate_probability,
    normalise,
    shingle_hashes,
)
from lmforge.tasks.dedup.signatures import SIGNATURE_SCHEMA, signature_table
from lmforge.tasks.report import StageReport, Tally
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
__all__ = ["SIGNATURE_SCHEMA", "DedupConfig", "MinHashConfig", "MinHasher", "duplicate_rows",
           "find_duplicates", "normalise", "shingle_hashes", "signature_table"]

Policy = Literal["longest", "oldest", "smallest_id"]
_ATTRS = ["id", "shard", "source", "location", "chars", "nbytes", "created", "exact", "url"]


class DedupConfig(BaseModel):
    """Exact, URL and near-duplicate removal."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    exact: bool = Field(True, description="remove documents whose normalised text is identical")
    url: bool = Field(True, description="keep one page per URL (web sources)")
    minhash: MinHashConfig | None = Field(default_factory=MinHashConfig,
                                          description="near-duplicate removal; null disables")
    survivor: list[Policy] = Field(["longest", "oldest", "smallest_id"], description="which "
                                   "member of a cluster is kept, by these keys in order (ids "
                                   "break remaining ties; earlier runs' documents always win)")
    index: str | None = Field(None, description="folder of the incremental index: new "
                              "documents are deduped against every earlier run's survivors, "
                              "and this run's are appended as a new version")
    max_rounds: int = Field(100, ge=1, description="label-propagation rounds before giving up")
    max_local_edges: int = Field(
        5_000_000, ge=0, description="edge lists up to this size are clustered in memory "
        "(scipy, seconds); larger ones by distributed label propagation, which never gathers "
        "them on one machine")
    max_local_bytes: int = Field(
        256 * 2**20, ge=0, description="signature files (and index) up to this size on disk "
        "are clustered in the calling process as one partition: no shuffle, no task "
        "scheduling, the same result; larger corpora go through the cluster's shuffles")


def _signatures(files: list[Path], columns: list[str]) -> dd.DataFrame:
    frame = dd.read_parquet([str(f) for f in files], columns=columns)
    return frame.assign(prior=False)


def _with_index(new: dd.DataFrame, index: DedupIndex | None, columns: list[str]
                ) -> dd.DataFrame:
    """New documents plus earlier survivors (without entries for these very documents)."""
    old = index.read(columns) if index else None
    if old is None:
        return new
    old = _without(old, new[["id"]])
    return dd.concat([new, old.assign(prior=True, shard=-1).astype({"shard": new.shard.dtype})])


def _without(frame: dd.DataFrame, ids: dd.DataFrame) -> dd.DataFrame:
    """Rows of ``frame`` whose id is not in ``ids`` (an anti-join)."""
    marked = frame.merge(ids.assign(_hit=True), on="id", how="left")
    return marked[marked._hit.isna()].drop(columns=["_hit"])


def _reason(frame: pd.DataFrame) -> pd.Series:
    same_text = frame.exact == frame.exact_s
    same_url = (frame.url != 0) & (frame.url == frame.url_s)
    return pd.Series(np.where(same_text, "exact", np.where(same_url, "url", "minhash")),
                     index=frame.index, dtype="string")


def _with_reason(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(reason=_reason(frame))


def find_duplicates(files: list[Path], cfg: DedupConfig, out_dir: Path,
                    run: dict | None = None) -> StageReport:
    """Cluster every signature file (plus the index); write ``out_dir/part-*.parquet`` with
    (id, shard, source, location, chars, survivor, reason) per removed document."""
    start = time.perf_counter()
    index = DedupIndex(Path(cfg.index)) if cfg.index else None
    size = sum(f.stat().st_size for f in files) + (sum(
        p.stat().st_size for p in Path(cfg.index).rglob("*.parquet")) if cfg.index else 0)
    if size <= cfg.max_local_bytes:  # small: one partition, computed here
        with dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}):
            report = _find(files, cfg, out_dir, run, index, 1, start)
        report.extra["path"] = "in-process"
        return report
    report = _find(files, cfg, out_dir, run, index, max(1, len(files)), start)
    report.extra["path"] = "distributed"
    return report


def _find(files: list[Path], cfg: DedupConfig, out_dir: Path, run: dict | None,
          index: DedupIndex | None, parts: int, start: float) -> StageReport:
    verify = bool(cfg.minhash and cfg.minhash.verify)
    columns = [*_ATTRS, "bands"] + ["shingles"] * verify
    docs = _with_index(_signatures(files, columns), index, columns)
    # Not persisted: re-reading the signature files is cheap, and keeping them in memory would
    # make a worker's memory grow with the corpus. Partition counts stay near the input's.
    docs = docs.repartition(npartitions=parts)
    scratch = out_dir.with_name(out_dir.name + ".scratch")
    keys = keys_frame(docs, exact=cfg.exact, url=cfg.url, minhash=cfg.minhash is not None)
    edges = _checkpoint(candidate_edges(keys), scratch / "candidates")
    if verify:
        edges = _checkpoint(verify_edges(edges, docs[["id", "shingles"]],
                                         cfg.minhash.threshold), scratch / "verified")
    if _rows(scratch / ("verified" if verify else "candidates")) <= cfg.max_local_edges:
        local = scratch / "components-local"
        local.mkdir(parents=True, exist_ok=True)
        components_local(edges.compute()).to_parquet(local / "part-00000.parquet", index=False)
        comps = dd.read_parquet(str(local))
    else:
        comps = connected_components(edges, scratch / "components", cfg.max_rounds)
    members = comps.merge(docs[[*_ATTRS, "prior"]], on="id")
    best = survivors(members, cfg.survivor)
    attrs = docs[["id", "exact", "url"]].rename(
        columns={"id": "survivor", "exact": "exact_s", "url": "url_s"})
    dups = members.merge(best, on="comp").merge(attrs, on="survivor")
    dups = dups[(dups.id != dups.survivor) & ~dups.prior]
    # the reason computed on each partition's own rows (see cluster._verified): a column made
    # by a separate map_partitions and assigned back can meet the rows in another order after
    # a shuffle, which gave exact copies "minhash" and near copies "exact" on the cluster path
    dups = dups.map_partitions(_with_reason, meta=_with_reason(dups._meta))
    dups = dups[["id", "shard", "source", "location", "chars", "nbytes", "survivor", "reason"]]
    shutil.rmtree(out_dir, ignore_errors=True)
    dups.repartition(npartitions=parts).to_parquet(
        str(out_dir), write_index=False, compression="zstd", partition_on=["shard"])
    dups = _stored(out_dir)  # computed once; the report and the index read it back
    report = _report(docs, dups, comps, start)
    if cfg.minhash is not None:
        report.extra["lsh"] = _lsh_summary(cfg.minhash, scratch, verify)
    if index is not None:
        kept = _without(docs[~docs.prior], dups[["id"]])
        indexed = index.read(["id"])
        if indexed is not None:  # documents of a re-run batch are indexed already
            kept = _without(kept, indexed)
        record = index.append(kept[columns], run=dict(run or {}), partitions=parts)
        report.extra["index_version"] = index.version
        report.extra["index_added"] = record["documents"] if record else 0
    return report


def _checkpoint(frame: dd.DataFrame, path: Path) -> dd.DataFrame:
    """Compute once into Parquet and continue from there (short task graphs, bounded memory)."""
    start = time.perf_counter()
    shutil.rmtree(path, ignore_errors=True)
    frame.to_parquet(str(path), write_index=False)
    log.info("dedup: %s in %.1f s", path.name, time.perf_counter() - start)
    return dd.read_parquet(str(path))


def _lsh_summary(cfg: MinHashConfig, scratch: Path, verify: bool) -> dict:
    """The banding, its S-curve, and what it found: MinHash candidate edges and, verified,
    their exact Jaccard per bin, so a reader sees the recall the banding promises (the curve)
    next to the pairs it produced."""
    bands, rows = cfg.bands_rows()
    summary: dict = {"bands": bands, "rows": rows, "threshold": cfg.threshold,
                     "p_candidate_at_threshold": round(
                         candidate_probability(cfg.threshold, bands, rows), 4),
                     "s_curve": cfg.s_curve()}
    candidates = _edge_column(scratch / "candidates", "kind")
    summary["candidate_edges"] = int((candidates == KIND_MINHASH).sum())
    if verify:
        jaccard = _edge_column(scratch / "verified", "jaccard").dropna()
        summary["verified_edges"] = len(jaccard)
        edges = [cfg.threshold, *(e for e in (0.85, 0.9, 0.95) if e > cfg.threshold), 1.0]
        counts = pd.cut(jaccard, edges, right=False)
        summary["verified_jaccard"] = {
            f"{iv.left:.2f}-{iv.right:.2f}": int(n)
            for iv, n in counts.value_counts(sort=False).items()}
        summary["verified_jaccard"][f"{edges[-2]:.2f}-1.00"] += int((jaccard >= 1.0).sum())
    return summary


def _edge_column(path: Path, column: str) -> pd.Series:
    files = sorted(path.glob("*.parquet"))
    if not files:
        return pd.Series(dtype="float64")
    return pd.concat([pq.read_table(f, columns=[column]).column(column).to_pandas()
                      for f in files], ignore_index=True)


def _rows(path: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in path.glob("*.parquet"))


def _stored(out_dir: Path) -> dd.DataFrame:
    columns = ["id", "source", "reason", "nbytes"]
    files = sorted(out_dir.glob("shard=*/*.parquet"))
    if not files:
        return dd.from_pandas(pd.DataFrame({"id": pd.Series(dtype="string"),
                                            "source": pd.Series(dtype="string"),
                                            "reason": pd.Series(dtype="string"),
                                            "nbytes": pd.Series(dtype="int64")}),
                              npartitions=1)
    return dd.read_parquet([str(f) for f in files], columns=columns)


def _report(docs: dd.DataFrame, dups: dd.DataFrame, comps: dd.DataFrame, start: float
            ) -> StageReport:
    new = docs[~docs.prior]
    per_source = new.groupby("source").agg({"id": "count", "nbytes": "sum"}).compute()
    dropped = dups.groupby(["source", "reason"]).agg({"id": "count", "nbytes": "sum"}).compute()
    sizes = comps.groupby("comp").id.count().value_counts().compute()
    tally = Tally("dedup")
    for source, row in per_source.iterrows():
        tally.bulk(source, docs_in=int(row["id"]), bytes_in=int(row["nbytes"]))
    gone = Counter()
    for (source, reason), row in dropped.iterrows():
        tally.bulk(source, dropped={reason: int(row["id"])})
        gone[source] += int(row["nbytes"])
    for source, row in per_source.iterrows():
        n_dropped = int(dropped.loc[source]["id"].sum()) if source in dropped.index else 0
        tally.bulk(source, docs_out=int(row["id"]) - n_dropped,
                   bytes_out=int(row["nbytes"]) - gone[source])
    singletons = len(new) - int(comps.shape[0].compute())
    hist = {str(int(k)): int(v) for k, v in sizes.sort_index().items()}
    if singletons > 0:
        hist["1"] = hist.get("1", 0) + singletons
    tally.add_extra("cluster_sizes", dict(sorted(hist.items(), key=lambda kv: int(kv[0]))))
    tally.seconds = time.perf_counter() - start
    return tally.report()


def duplicate_rows(out_dir: Path, shard: int) -> list[dict]:
    """The removed documents of one shard (with survivor and reason)."""
    part = out_dir / f"shard={shard}"
    if not part.exists():
        return []
    return pq.read_table(part).to_pylist()
