"""Training-ready token shards: tokenize curated shards, split by document id, pack.

Every curated shard becomes ``tokens/train/part-N.bin`` and ``tokens/val/part-N.bin``: the token
ids of its documents, each followed by the end-of-document token, as a flat little-endian array
(uint16 when the vocabulary fits, else uint32). Packing into fixed-length sequences is a view
over the concatenated stream (``model.data``), so no token is lost and none is padding.

``tokens/manifest.json`` records the dtype, token counts per shard, split and source, each
file's SHA-256, the tokenizer hash and the curated-data version it was built from.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from tasks.schema import Document
from tasks.shards import iter_documents, shard_name
from tasks.tokenizer import EOT, load_tokenizer

SPLITS = ("train", "val")


class DatasetConfig(BaseModel):
    """How curated text becomes training sequences."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq_len: int = Field(256, ge=8, description="tokens per training sequence")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="share of documents held out, "
                                "chosen by id so a document is never in both splits")
    encode_batch: int = Field(256, ge=1, description="documents tokenized per batch call")


def split_of(doc_id: str, val_fraction: float) -> str:
    """Deterministic split from the document id (a uniform hash)."""
    return "val" if int(doc_id[:8], 16) / 0x1_0000_0000 < val_fraction else "train"


@dataclass
class ShardTokens:
    """What one curated shard contributed."""

    shard: int
    files: dict[str, str] = field(default_factory=dict)  # split -> file name
    tokens: dict[str, int] = field(default_factory=dict)  # split -> tokens
    documents: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)  # split -> UTF-8 bytes of text
    sha256: dict[str, str] = field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> source -> tok


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def _encode_batches(docs: list[Document], tokenizer_path: str) -> list[list[int]]:
    tokenizer = load_tokenizer(tokenizer_path)
    return [e.ids for e in tokenizer.encode_batch([d.text for d in docs])]


def pack_shard(curated: Path, shard: int, tokenizer_path: str, cfg: DatasetConfig,
               out: Path) -> ShardTokens:
    """Tokenize one curated shard into its train and val token files (written atomically)."""
    tokenizer = load_tokenizer(tokenizer_path)
    eot = tokenizer.token_to_id(EOT)
    dtype = token_dtype(tokenizer.get_vocab_size())
    result = ShardTokens(shard=shard)
    handles = {}
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        name = shard_name(shard).replace(".parquet", ".bin")
        result.files[split] = f"{split}/{name}"
        handles[split] = (out / split / f".{name}.tmp").open("wb")
    digests = {s: hashlib.sha256() for s in SPLITS}
    counts: dict[str, Counter[str]] = {s: Counter() for s in ("tokens", "documents", "bytes")}
    by_source: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    batch: list[Document] = []

    def flush() -> None:
        for doc, ids in zip(batch, _encode_batches(batch, tokenizer_path), strict=True):
            split = split_of(doc.id, cfg.val_fraction)
            data = np.asarray([*ids, eot], dtype=dtype).tobytes()
            handles[split].write(data)
            digests[split].update(data)
            counts["tokens"][split] += len(ids) + 1
            counts["documents"][split] += 1
            counts["bytes"][split] += doc.nbytes
            by_source[split][doc.source] += len(ids) + 1
        batch.clear()

    for doc in iter_documents(curated):
        batch.append(doc)
        if len(batch) >= cfg.encode_batch:
            flush()
    flush()
    for split in SPLITS:
        handles[split].close()
        (out / split / f".{Path(result.files[split]).name}.tmp").replace(out / result.files[split])
        result.tokens[split] = counts["tokens"][split]
        result.documents[split] = counts["documents"][split]
        result.bytes[split] = counts["bytes"][split]
        result.sha256[split] = digests[split].hexdigest()
        result.by_source[split] = dict(by_source[split])
    return result


def write_dataset_manifest(out: Path, shards: list[ShardTokens], *, seq_len: int,
                           vocab_size: int, tokenizer: str, tokenizer_sha: str,
                           curated_version: str) -> dict[str, Any]:
    shards = sorted(shards, key=lambda s: s.shard)
    totals = {split: {"tokens": sum(s.tokens[split] for s in shards),
                      "documents": sum(s.documents[split] for s in shards),
                      "bytes": sum(s.bytes[split] for s in shards),
                      "by_source": dict(sum((Counter(s.by_source[split]) for s in shards),
                                            Counter()))}
              for split in SPLITS}
    manifest: dict[str, Any] = {
        "format": "lmforge-packed-tokens-v1",
        "dtype": token_dtype(vocab_size).str,
        "seq_len": seq_len,
        "vocab_size": vocab_size,
        "tokenizer": tokenizer,
        "tokenizer_sha256": tokenizer_sha,
        "curated_version": curated_version,
        "splits": totals,
        "shards": [asdict(s) for s in shards],
    }
    body = json.dumps(manifest, indent=1, sort_keys=True)
    manifest["version"] = hashlib.sha256(body.encode()).hexdigest()[:16]
    path = out / "manifest.json"
    tmp = path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(path)
    return manifest


def split_files(manifest: dict[str, Any], root: Path, split: str) -> list[Path]:
    return [root / s["files"][split] for s in manifest["shards"]]


@task(name="pack-shard", task_run_name="pack-{shard:05d}", cache_policy=NO_CACHE)
def pack_shard_task(curated: Path, shard: int, tokenizer_path: str, cfg: DatasetConfig,
                    out: Path) -> ShardTokens:
    return pack_shard(curated, shard, tokenizer_path, cfg, out)
