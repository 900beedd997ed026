"""Exact and MinHash-LSH near-duplicate detection across every shard and source.

Two steps: :func:`signature_table` runs per shard, inside the filtering pass, and stores each
document's normalised-text hash and LSH band keys; :func:`find_duplicates` groups band keys over
all shards, joins documents that share a key into clusters (union-find), keeps one survivor per
cluster (the smallest id, so the choice never depends on shard order or worker count) and
writes every other member to ``rejected/`` as ``dedup:exact`` or ``dedup:minhash`` with the id
of its survivor.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel, ConfigDict, Field

from tasks.report import StageReport, Tally
from tasks.schema import Document
from tasks.shards import RejectWriter

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")

SIGNATURE_SCHEMA = pa.schema([
    ("id", pa.string()), ("shard", pa.int32()), ("source", pa.string()),
    ("location", pa.string()), ("chars", pa.int64()), ("exact", pa.int64()),
    ("bands", pa.list_(pa.int64())),
])


class MinHashConfig(BaseModel):
    """Near-duplicate settings (datasketch MinHash + LSH banding)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity that counts as "
                             "duplicate (0.8: Lee et al. 2022, 'Deduplicating Training Data')")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    shingle: Literal["word", "char"] = Field("word", description="n-grams of words or characters")
    ngram: int = Field(5, ge=1, description="shingle size (5 words, as in Gopher/MassiveText)")
    false_positive_weight: float = Field(0.5, ge=0, le=1, description="weight of false "
                                         "positives when choosing bands x rows")
    seed: int = Field(1, description="permutation seed; change it and all signatures change")

    def bands_rows(self) -> tuple[int, int]:
        """(bands, rows) minimising the weighted false-positive/negative probability."""
        lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm,
                         weights=(self.false_positive_weight, 1 - self.false_positive_weight))
        return lsh.b, lsh.r


class DedupConfig(BaseModel):
    """Exact and near-duplicate removal."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    exact: bool = Field(True, description="remove documents whose normalised text is identical")
    minhash: MinHashConfig | None = Field(default_factory=MinHashConfig,
                                          description="near-duplicate removal; null disables")


def normalise(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for hashing and shingling."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def shingles(text: str, shingle: str, ngram: int) -> set[bytes]:
    norm = normalise(text)
    if shingle == "char":
        units: list[str] | str = norm
        joiner = ""
    else:
        units, joiner = norm.split(), " "
    if len(units) <= ngram:
        return {joiner.join(units).encode()} if units else set()
    return {joiner.join(units[i:i + ngram]).encode() for i in range(len(units) - ngram + 1)}


class MinHasher:
    """Signatures and band keys with permutations computed once per process."""

    def __init__(self, cfg: MinHashConfig) -> None:
        self.cfg = cfg
        self.bands, self.rows = cfg.bands_rows()
        self._template = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)

    def signature(self, text: str) -> np.ndarray:
        m = MinHash(num_perm=self.cfg.num_perm, permutations=self._template.permutations,
                    scheme=self._template.scheme)
        m.update_batch(shingles(text, self.cfg.shingle, self.cfg.ngram))
        return m.hashvalues

    def band_keys(self, signature: np.ndarray) -> list[int]:
        r = self.rows
        return [_hash64(i.to_bytes(2, "little") + signature[i * r:(i + 1) * r].tobytes())
                for i in range(self.bands)]


def signature_table(docs: Iterable[Document], shard: int, cfg: DedupConfig) -> pa.Table:
    hasher = MinHasher(cfg.minhash) if cfg.minhash else None
    rows = {name: [] for name in SIGNATURE_SCHEMA.names}
    for doc in docs:
        rows["id"].append(doc.id)
        rows["shard"].append(shard)
        rows["source"].append(doc.source)
        rows["location"].append(doc.location)
        rows["chars"].append(len(doc.text))
        rows["exact"].append(_hash64(normalise(doc.text).encode()))
        rows["bands"].append(hasher.band_keys(hasher.signature(doc.text)) if hasher else [])
    return pa.table(rows, schema=SIGNATURE_SCHEMA)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the root is the smallest index


def _union_equal_keys(uf: _UnionFind, keys: np.ndarray) -> None:
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    same = np.nonzero(sorted_keys[1:] == sorted_keys[:-1])[0]
    for k in same:
        uf.union(int(order[k]), int(order[k + 1]))


def find_duplicates(signature_files: list[Path], cfg: DedupConfig, rejected_path: Path,
                    duplicates_path: Path) -> StageReport:
    """Cluster all documents, write rejects and the per-shard list of ids to drop."""
    start = time.perf_counter()
    table = (pa.concat_tables([pq.read_table(p) for p in signature_files])
             if signature_files else SIGNATURE_SCHEMA.empty_table())
    # Sorting by id makes index order = id order, so the union-find root of every cluster
    # (its smallest index) is the member with the smallest id: a deterministic survivor.
    table = table.sort_by("id")
    n = table.num_rows
    uf = _UnionFind(n)
    exact = table.column("exact").to_numpy()
    if cfg.exact:
        _union_equal_keys(uf, exact)
    if cfg.minhash and n:
        bands = np.array(table.column("bands").to_pylist(), dtype=np.int64).reshape(n, -1)
        for j in range(bands.shape[1]):
            _union_equal_keys(uf, bands[:, j])
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    # a member with an identical (normalised) twin of smaller id is an exact duplicate
    _, first, inverse = np.unique(exact, return_index=True, return_inverse=True)
    exact_twin = first[inverse] != np.arange(n)
    tally = Tally("dedup")
    ids, sources = table.column("id").to_pylist(), table.column("source").to_pylist()
    chars = table.column("chars").to_pylist()
    dup_rows: dict[str, list] = {"id": [], "shard": [], "survivor": [], "reason": []}
    shards = table.column("shard").to_pylist()
    locations = table.column("location").to_pylist()
    with RejectWriter(rejected_path, "dedup") as reject:
        for i in range(n):
            tally.seen(sources[i], chars[i])
            root = int(roots[i])
            if root == i:
                tally.kept(sources[i], chars[i])
                continue
            reason = "exact" if cfg.exact and exact_twin[i] else "minhash"
            tally.dropped(sources[i], reason)
            dup_rows["id"].append(ids[i])
            dup_rows["shard"].append(shards[i])
            dup_rows["survivor"].append(ids[root])
            dup_rows["reason"].append(reason)
            reject.write(ids[i], sources[i], reason, locations[i], chars[i],
                         {"survivor": ids[root]})
    duplicates_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = duplicates_path.with_name(f".{duplicates_path.name}.tmp")
    pq.write_table(pa.table(dup_rows, schema=pa.schema([
        ("id", pa.string()), ("shard", pa.int32()), ("survivor", pa.string()),
        ("reason", pa.string())])), tmp, compression="zstd")
    tmp.replace(duplicates_path)
    sizes = Counter(Counter(roots.tolist()).values())
    tally.add_extra("cluster_sizes", {str(k): v for k, v in sorted(sizes.items())})
    tally.seconds = time.perf_counter() - start
    return tally.report()


def duplicate_ids(duplicates_path: Path, shard: int) -> set[str]:
    """Ids of one shard that lost to a survivor."""
    table = pq.read_table(duplicates_path, columns=["id"], filters=[("shard", "=", shard)])
    return set(table.column("id").to_pylist())
