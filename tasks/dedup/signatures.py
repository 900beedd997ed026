"""Per-shard dedup signatures: what the global clustering step needs of each document, and
nothing more (never the text)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pyarrow as pa
from lmforge.tasks.dedup.minhash import MinHashConfig, MinHasher, normalise, shingle_hashes
from lmforge.tasks.readers.urls import normalise_url
from lmforge.tasks.schema import Document

SIGNATURE_SCHEMA = pa.schema([
    ("id", pa.string()), ("shard", pa.int32()), ("source", pa.string()),
    ("location", pa.string()), ("chars", pa.int64()), ("nbytes", pa.int64()),
    ("created", pa.timestamp("us", tz="UTC")),
    ("exact", pa.int64()),  # hash of the normalised text
    ("url", pa.int64()),  # hash of the normalised URL (web sources), 0 otherwise: no nulls,
    # so every partition keeps the int64 type through Dask's shuffles
    ("bands", pa.list_(pa.int64())),  # LSH band keys
    ("shingles", pa.list_(pa.uint32())),  # sorted shingle hashes, kept for verification
])
URL_SOURCES = frozenset({"commoncrawl"})


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def signature_table(docs: Iterable[Document], shard: int, minhash: MinHashConfig | None
                    ) -> pa.Table:
    hasher = MinHasher(minhash) if minhash else None
    rows: dict[str, list] = {name: [] for name in SIGNATURE_SCHEMA.names}
    # hash64 never returns 0 for a real URL in practice (1 in 2^64)
    for doc in docs:
        rows["id"].append(doc.id)
        rows["shard"].append(shard)
        rows["source"].append(doc.source)
        rows["location"].append(doc.location)
        rows["chars"].append(len(doc.text))
        rows["nbytes"].append(doc.nbytes)
        rows["created"].append(doc.created)
        norm = normalise(doc.text)
        rows["exact"].append(hash64(norm.encode()))
        rows["url"].append(hash64(normalise_url(doc.url).encode())
                           if doc.url and doc.source in URL_SOURCES else 0)
        if hasher is None:
            rows["bands"].append([])
            rows["shingles"].append([])
            continue
        shingles = shingle_hashes(doc.text, hasher.cfg.shingle, hasher.cfg.ngram,
                                  normalised=norm)
        rows["bands"].append(hasher.band_keys(hasher.signature(shingles)).tolist()
                             if len(shingles) else [])
        rows["shingles"].append(shingles if hasher.cfg.verify else [])
    return pa.table(rows, schema=SIGNATURE_SCHEMA)
