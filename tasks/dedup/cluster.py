"""Clustering duplicates on Dask, without gathering the corpus or its edges on one machine.

1. Keys: every document contributes (kind, key) rows: its LSH band keys, its normalised-text
   hash, its URL hash. A shuffle (groupby on the key) puts each bucket in one partition; every
   member of a bucket with more than one member gets an edge to the bucket's smallest id (a
   star, not all pairs).
2. Verification (optional): MinHash edges whose exact Jaccard similarity of shingles is below
   the threshold are dropped (LSH false positives).
3. Connected components by iterative minimum-label propagation over the edge list, each round a
   distributed merge + groupby, until no label changes (chains A~B~C collapse).
4. Survivors: per component, the first member by the configured policy (prior index entries
   first, then e.g. longest, oldest, smallest id), chosen after a shuffle by component.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

KIND_MINHASH, KIND_EXACT, KIND_URL = 0, 1, 2
POLICY_COLUMNS = {"longest": ("chars", False), "oldest": ("created", True),
                  "smallest_id": ("id", True), "prior": ("prior", False)}


def keys_frame(docs: dd.DataFrame, *, exact: bool, url: bool, minhash: bool) -> dd.DataFrame:
    """(id, kind, key) rows for every way two documents can be duplicates."""
    parts = []
    if minhash:
        bands = docs[["id", "bands"]].explode("bands").dropna(subset=["bands"])
        bands = bands.rename(columns={"bands": "key"})
        parts.append(bands.assign(kind=KIND_MINHASH))
    if exact:
        parts.append(docs[["id", "exact"]].rename(columns={"exact": "key"})
                     .assign(kind=KIND_EXACT))
    if url:
        with_url = docs[docs.url != 0]
        parts.append(with_url[["id", "url"]].rename(columns={"url": "key"})
                     .assign(kind=KIND_URL))
    if not parts:  # every method switched off (e.g. an ablation's uncurated arm): no keys
        parts.append(docs[docs.id.isna()][["id", "exact"]].rename(columns={"exact": "key"})
                     .assign(kind=KIND_EXACT))
    frame = dd.concat(parts) if len(parts) > 1 else parts[0]
    return frame.astype({"key": "int64", "kind": "int8"})


def candidate_edges(keys: dd.DataFrame) -> dd.DataFrame:
    """(src, dst, kind) with src the smallest id of a shared bucket, dst another member."""
    anchors = keys.groupby(["kind", "key"]).agg({"id": "min"}).reset_index()
    anchors = anchors.rename(columns={"id": "src"})
    edges = keys.merge(anchors, on=["kind", "key"])
    edges = edges[edges.id != edges.src].rename(columns={"id": "dst"})
    return edges[["src", "dst", "kind"]].drop_duplicates()


def _jaccard(frame: pd.DataFrame) -> np.ndarray:
    def one(a: np.ndarray, b: np.ndarray) -> float:
        if len(a) == 0 or len(b) == 0:
            return 0.0
        inter = len(np.intersect1d(a, b, assume_unique=True))
        return inter / (len(a) + len(b) - inter)
    return np.fromiter((one(np.asarray(a), np.asarray(b))
                        for a, b in zip(frame.sh_src, frame.sh_dst, strict=True)),
                       dtype="float64", count=len(frame))


def _verified(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The partition's edges at or above the threshold, with their Jaccard. One function
    per partition on purpose: a Jaccard column computed by a separate ``map_partitions`` and
    assigned back is aligned by partition, and dask's optimiser may plan the two branches
    with different shuffles (row orders), giving edges each other's similarity."""
    out = frame[["src", "dst", "kind"]].assign(jaccard=_jaccard(frame))
    return out[out.jaccard >= threshold]


def verify_edges(edges: dd.DataFrame, shingles: dd.DataFrame, threshold: float
                 ) -> dd.DataFrame:
    """Keep exact/URL edges; keep MinHash edges whose true Jaccard reaches the threshold
    (their ``jaccard`` kept for the report; NaN on exact and URL edges)."""
    sure = edges[edges.kind != KIND_MINHASH].assign(jaccard=np.nan)
    maybe = edges[edges.kind == KIND_MINHASH]
    maybe = maybe.merge(shingles.rename(columns={"id": "src", "shingles": "sh_src"}), on="src")
    maybe = maybe.merge(shingles.rename(columns={"id": "dst", "shingles": "sh_dst"}), on="dst")
    meta = _verified(maybe._meta, threshold)
    return dd.concat([sure, maybe.map_partitions(_verified, threshold, meta=meta)])


def components_local(edges: pd.DataFrame) -> pd.DataFrame:
    """The same (id, comp) as :func:`connected_components`, in memory with scipy's sparse
    graph routines, for edge lists that fit on one machine."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    if edges.empty:
        return pd.DataFrame({"id": pd.Series(dtype="string"), "comp": pd.Series(dtype="string")})
    codes, ids = pd.factorize(pd.concat([edges.src, edges.dst], ignore_index=True))
    n, m = len(ids), len(edges)
    graph = coo_matrix((np.ones(m, dtype=np.int8), (codes[:m], codes[m:])), shape=(n, n))
    _, labels = scipy_components(graph, directed=False)
    frame = pd.DataFrame({"id": ids.astype("string"), "label": labels})
    frame["comp"] = frame.groupby("label").id.transform("min")
    return frame[["id", "comp"]]


def _take_offer(frame: pd.DataFrame) -> pd.DataFrame:
    better = frame.offer.notna() & (frame.offer < frame.comp)
    return pd.DataFrame({"id": frame.id, "comp": frame.comp.where(~better, frame.offer),
                         "changed": better.astype(bool)})


def connected_components(edges: dd.DataFrame, scratch: Path, max_rounds: int = 100
                         ) -> dd.DataFrame:
    """(id, comp) for every node of the edge list (best read from Parquet); comp is the
    smallest id of its component.

    Each round's labels are written to ``scratch`` and read back: nothing is held in memory
    between rounds (bounded worker memory), and nothing depends on persisted futures."""
    shutil.rmtree(scratch, ignore_errors=True)
    pairs = dd.concat([edges[["src", "dst"]],
                       edges[["dst", "src"]].rename(columns={"dst": "src", "src": "dst"})])
    nodes = pairs[["src"]].drop_duplicates().rename(columns={"src": "id"})
    nodes.assign(comp=nodes.id).to_parquet(str(scratch / "labels-000"), write_index=False)
    labels = dd.read_parquet(str(scratch / "labels-000"))
    for rounds in range(1, max_rounds + 1):
        # every node takes the smallest label among itself and its neighbours
        offers = pairs.merge(labels.rename(columns={"id": "src"}), on="src")
        offers = offers.groupby("dst").agg({"comp": "min"}).reset_index()
        offers = offers.rename(columns={"dst": "id", "comp": "offer"})
        merged = labels.merge(offers, on="id", how="left")
        merged = merged.map_partitions(_take_offer, meta=_take_offer(merged._meta))
        path = scratch / f"labels-{rounds:03d}"
        merged.to_parquet(str(path), write_index=False)
        stored_labels = dd.read_parquet(str(path))
        changed = int(stored_labels.changed.sum().compute())
        labels = stored_labels[["id", "comp"]]
        if changed == 0:
            log.info("connected components converged after %d rounds", rounds)
            return labels
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds; raise "
                       "curate.dedup.max_rounds")


def _pick(frame: pd.DataFrame, order: Sequence[tuple[str, bool]]) -> pd.DataFrame:
    columns = ["comp"] + [c for c, _ in order]
    ascending = [True] + [asc for _, asc in order]
    best = frame.sort_values(columns, ascending=ascending, na_position="last",
                             kind="mergesort").drop_duplicates("comp")
    return best[["comp", "id"]].rename(columns={"id": "survivor"})


def survivors(members: dd.DataFrame, policy: Sequence[str]) -> dd.DataFrame:
    """(comp, survivor) by the policy; ties always end on the smallest id (deterministic)."""
    order = [POLICY_COLUMNS[p] for p in ("prior", *policy) if p in POLICY_COLUMNS]
    if ("id", True) not in order:
        order.append(("id", True))
    shuffled = members.shuffle("comp")
    return shuffled.map_partitions(_pick, order, meta=_pick(members._meta, order))
