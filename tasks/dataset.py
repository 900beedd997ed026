"""Training-ready token data: tokenize curated shards, split by document id, decontaminate,
mix sources.

1. :func:`pack_shard` (per curated shard, on Dask): every document becomes its token ids plus
   the end-of-document token, appended to ``tokens/{train,val}/part-N.bin`` (flat little-endian
   uint16/uint32); ``tokens/index/part-N.parquet`` records each document's split, source,
   offset and length. Training documents overlapping an evaluation set are left out.
2. :func:`build_plan` (global, on the index only): the source mixture. A source weighted 3.0
   appears three times, one weighted 0.6 contributes the first 60% of its tokens in a
   deterministic (document-id hash) order; ``tokens/plan-train.parquet`` lists the resulting
   document segments in a shuffled, deterministic order. The trainer reads the plan as one
   packed token stream (``model.data``): fixed-length sequences across document boundaries, no
   padding, no token lost.
3. ``tokens/manifest.json``: dtype, token counts per split and source, requested and achieved
   mixture, decontamination counts, per-file SHA-256, the tokenizer hash and the curated-data
   version; its digest is the dataset version.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from lmforge.model.atomic import atomic_path, commit, temporary_path, write_json
from lmforge.tasks.codeversion import code_version
from lmforge.tasks.decontaminate import DecontaminationConfig, overlaps
from lmforge.tasks.readers import SourceKind
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import (
    file_digest,
    iter_documents,
    output_digests,
    outputs_intact,
    shard_name,
)
from lmforge.tasks.tokenizer import EOT, load_tokenizer, tokenizer_hash
from pydantic import BaseModel, ConfigDict, Field

SPLITS = ("train", "val")
INDEX_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("split", pa.string()),
                          ("file", pa.string()), ("offset", pa.int64()), ("length", pa.int64()),
                          ("nbytes", pa.int64())])


class DatasetConfig(BaseModel):
    """How curated text becomes training sequences."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq_len: int = Field(256, ge=8, description="tokens per training sequence")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="share of documents held out, "
                                "chosen by id so a document is never in both splits")
    mixture: dict[SourceKind, float] = Field(
        {}, description="source -> epochs of its tokens in training (e.g. wikipedia: 3.0, "
        "commoncrawl: 0.6); sources not listed count once")
    decontaminate: DecontaminationConfig | None = Field(
        None, description="evaluation sets whose n-grams must not appear in training")
    encode_batch: int = Field(256, ge=1, description="documents tokenized per batch call")
    seed: int = Field(0, description="order of the mixed training documents")
    curated_version: int | None = Field(
        None, ge=1, description="dataset version of an incremental ingest to tokenize (its "
        "shards as committed in DIR/ingest/versions/vN.json, checksums verified); null = the "
        "curated shards of DIR/manifest.json (the newest)")


def split_of(doc_id: str, val_fraction: float) -> str:
    """Deterministic split from the document id (a uniform hash)."""
    return "val" if int(doc_id[:8], 16) / 0x1_0000_0000 < val_fraction else "train"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


@dataclass
class ShardTokens:
    """What one curated shard contributed."""

    shard: int
    files: dict[str, str] = field(default_factory=dict)  # split -> file, relative
    tokens: dict[str, int] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> source -> tok
    contaminated: dict[str, int] = field(default_factory=dict)  # source -> documents left out


class _ShardWriter:
    """Both splits' token files and the document index of one shard."""

    def __init__(self, out: Path, shard: int, dtype: np.dtype) -> None:
        self.out, self.dtype, self.result = out, dtype, ShardTokens(shard=shard)
        name = shard_name(shard).replace(".parquet", ".bin")
        self.handles, self.digests, self.offsets = {}, {}, Counter()
        self.tmp: dict[str, Path] = {}
        for split in SPLITS:
            (out / split).mkdir(parents=True, exist_ok=True)
            self.result.files[split] = f"{split}/{name}"
            self.tmp[split] = temporary_path(out / split / name)
            self.handles[split] = self.tmp[split].open("wb")
            self.digests[split] = hashlib.sha256()
        self.rows: dict[str, list] = {n: [] for n in INDEX_SCHEMA.names}
        self.counts = {k: Counter() for k in ("tokens", "documents", "bytes")}
        self.by_source: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}

    def add(self, doc: Document, split: str, ids: list[int], eot: int) -> None:
        data = np.asarray([*ids, eot], dtype=self.dtype).tobytes()
        self.handles[split].write(data)
        self.digests[split].update(data)
        n = len(ids) + 1
        for name, value in (("id", doc.id), ("source", doc.source), ("split", split),
                            ("file", self.result.files[split]), ("offset", self.offsets[split]),
                            ("length", n), ("nbytes", doc.nbytes)):
            self.rows[name].append(value)
        self.offsets[split] += n
        self.counts["tokens"][split] += n
        self.counts["documents"][split] += 1
        self.counts["bytes"][split] += doc.nbytes
        self.by_source[split][doc.source] += n

    def close(self) -> ShardTokens:
        r = self.result
        for split in SPLITS:
            self.handles[split].close()
            commit(self.tmp[split], self.out / r.files[split])
            r.tokens[split] = self.counts["tokens"][split]
            r.documents[split] = self.counts["documents"][split]
            r.bytes[split] = self.counts["bytes"][split]
            r.sha256[split] = self.digests[split].hexdigest()
            r.by_source[split] = dict(self.by_source[split])
        index = self.out / "index" / shard_name(r.shard)
        with atomic_path(index) as tmp:
            pq.write_table(pa.table(self.rows, schema=INDEX_SCHEMA), tmp)
        return r


def pack_shard(curated: Path, shard: int, tokenizer_path: str, cfg: DatasetConfig,
               out: Path) -> ShardTokens:
    """Tokenize one curated shard into its train and val token files and document index,
    unless a finished record with the same inputs (curated bytes, tokenizer, config, code
    version) and intact outputs exists: a rerun after a crash redoes only unfinished shards."""
    key = hashlib.sha256(json.dumps([code_version(["lmforge.tasks.dataset"], ["tokenizers"]),
                                     file_digest(curated), tokenizer_hash(
        Path(tokenizer_path)), cfg.model_dump(mode="json", exclude={"curated_version"})],
        sort_keys=True).encode()
    ).hexdigest()[:16]
    record = out / "reports" / shard_name(shard).replace(".parquet", ".json")
    if record.exists():
        done = json.loads(record.read_text())
        if done.get("key") == key and outputs_intact(out, done.get("outputs")):
            return ShardTokens(**done["result"])
    result = _pack(curated, shard, tokenizer_path, cfg, out)
    outputs = output_digests(out, [out / f for f in result.files.values()]
                             + [out / "index" / shard_name(shard)])
    # written last: marks the shard finished
    write_json(record, {"key": key, "result": asdict(result), "outputs": outputs})
    return result


def _pack(curated: Path, shard: int, tokenizer_path: str, cfg: DatasetConfig,
          out: Path) -> ShardTokens:
    tokenizer = load_tokenizer(tokenizer_path)
    eot = tokenizer.token_to_id(EOT)
    writer = _ShardWriter(out, shard, token_dtype(tokenizer.get_vocab_size()))
    contaminated: Counter[str] = Counter()
    batch: list[Document] = []

    def flush() -> None:
        encoded = tokenizer.encode_batch([d.text for d in batch])
        for doc, enc in zip(batch, encoded, strict=True):
            split = split_of(doc.id, cfg.val_fraction)
            if split == "train" and cfg.decontaminate and overlaps(doc.text, cfg.decontaminate):
                contaminated[doc.source] += 1
                continue
            writer.add(doc, split, enc.ids, eot)
        batch.clear()

    for doc in iter_documents(curated):
        batch.append(doc)
        if len(batch) >= cfg.encode_batch:
            flush()
    flush()
    result = writer.close()
    result.contaminated = dict(contaminated)
    return result


def _order(ids: pd.Series, salt: str) -> np.ndarray:
    """A deterministic pseudo-random order of documents (by hash of id and salt)."""
    keys = pd.util.hash_array((ids + salt).to_numpy(dtype=object), categorize=False)
    return np.argsort(keys, kind="stable")


def build_plan(out: Path, cfg: DatasetConfig, shards: list[int]) -> dict[str, Any]:
    """Write ``plan-train.parquet`` and ``plan-val.parquet`` over the documents of the given
    packed shards (others in ``out``, e.g. of another dataset version, are not part of this
    dataset); return the mixture report."""
    index = pd.concat([pq.read_table(out / "index" / shard_name(n)).to_pandas()
                       for n in sorted(shards)], ignore_index=True)
    mixture: dict[str, Any] = {}
    for split in SPLITS:
        docs = index[index.split == split]
        parts = []
        for source, group in docs.groupby("source", sort=True):
            weight = cfg.mixture.get(source, 1.0) if split == "train" else 1.0
            chosen, achieved = _weighted(group, weight, f"{cfg.seed}:{source}")
            parts.append(chosen)
            if split == "train":
                available = int(group.length.sum())
                mixture[source] = {"weight": weight, "available_tokens": available,
                                   "target_tokens": round(weight * available),
                                   "tokens": achieved}
        plan = pd.concat(parts, ignore_index=True) if parts else index.iloc[:0].assign(repeat=0)
        plan = plan.iloc[_order(plan.id + ":" + plan["repeat"].astype(str), str(cfg.seed))]
        with atomic_path(out / f"plan-{split}.parquet") as tmp:
            pq.write_table(pa.Table.from_pandas(
                plan[["id", "source", "file", "offset", "length", "repeat"]],
                preserve_index=False), tmp)
    total = sum(m["tokens"] for m in mixture.values()) or 1
    for m in mixture.values():
        m["share"] = round(m["tokens"] / total, 4)
        m["error"] = round(m["tokens"] / m["target_tokens"] - 1, 4) if m["target_tokens"] else 0.0
    return mixture


def _weighted(group: pd.DataFrame, weight: float, salt: str) -> tuple[pd.DataFrame, int]:
    """Whole copies for the integer part of ``weight``; for the fraction, documents in hash
    order until the token target is met as closely as one document allows."""
    full = int(weight)
    copies = [group.assign(repeat=r) for r in range(full)]
    fraction = weight - full
    if fraction > 0:
        ordered = group.iloc[_order(group.id, salt)]
        cumulative = ordered.length.cumsum().to_numpy()
        target = fraction * int(group.length.sum())
        k = int(np.searchsorted(cumulative, target))  # first prefix reaching the target
        if k > 0 and k < len(cumulative) and \
                abs(cumulative[k - 1] - target) <= abs(cumulative[k] - target):
            k -= 1  # the shorter prefix is closer
        copies.append(ordered.iloc[:k + 1].assign(repeat=full))
    chosen = pd.concat(copies, ignore_index=True) if copies else group.iloc[:0].assign(repeat=0)
    return chosen, int(chosen.length.sum())


def write_dataset_manifest(out: Path, shards: list[ShardTokens], *, seq_len: int,
                           vocab_size: int, tokenizer: str, tokenizer_sha: str,
                           curated_version: str, mixture: dict[str, Any]) -> dict[str, Any]:
    shards = sorted(shards, key=lambda s: s.shard)
    totals = {split: {"tokens": sum(s.tokens[split] for s in shards),
                      "documents": sum(s.documents[split] for s in shards),
                      "bytes": sum(s.bytes[split] for s in shards),
                      "by_source": dict(sum((Counter(s.by_source[split]) for s in shards),
                                            Counter()))}
              for split in SPLITS}
    manifest: dict[str, Any] = {
        "format": "lmforge-packed-tokens-v2",
        "dtype": token_dtype(vocab_size).str,
        "seq_len": seq_len,
        "vocab_size": vocab_size,
        "tokenizer": tokenizer,
        "tokenizer_sha256": tokenizer_sha,
        "curated_version": curated_version,
        "splits": totals,
        "mixture": mixture,
        "plans": {split: f"plan-{split}.parquet" for split in SPLITS},
        "contaminated": dict(sum((Counter(s.contaminated) for s in shards), Counter())),
        "shards": [asdict(s) for s in shards],
    }
    body = json.dumps(manifest, indent=1, sort_keys=True)
    manifest["version"] = hashlib.sha256(body.encode()).hexdigest()[:16]
    write_json(out / "manifest.json", manifest, indent=1, sort_keys=True)
    return manifest


def split_files(manifest: dict[str, Any], root: Path, split: str) -> list[Path]:
    return [root / s["files"][split] for s in manifest["shards"]]
