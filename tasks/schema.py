"""The document record and the Parquet schemas of lmforge's output contract.

Every reader yields :class:`Document`; every stage reads and writes the same columns, so a user's
own tool can open ``DIR/curated``, ``DIR/rejected`` and ``DIR/quarantine`` with
``pyarrow.dataset.dataset(path)`` and see one table each.

Curated columns
    id        stable document id: a hash of (source kind, location), identical across reruns
    source    the source kind (``books``, ``commoncrawl``, ``reddit``, ``wikipedia``, ``code``)
    text      the document text after every stage
    location  where it came from: ``<path relative to its glob root>#<record key>``
    url, title, created, language   optional, filled where the source has them
    scores    ``list<struct<name: string, value: double>>``: numeric signals that stages
              measured (toxicity heads, language score, quality-classifier score); thresholds
              can change without rerunning. A list of key/value structs, not an Arrow map: HF
              ``datasets`` has no map type, and DuckDB, Polars, pandas and Spark read both
    meta      JSON object: source-specific fields (subreddit, page id, licence, PII counts, ...)

``SCHEMA_VERSION`` is recorded in the manifest; it changes whenever a column's type or meaning
does (1: ``scores`` as a map; 2: as a list of structs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa


def doc_id(source: str, location: str) -> str:
    """Stable 128-bit id of a record: the same source and location give the same id on any run."""
    return hashlib.blake2b(f"{source}\0{location}".encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class Document:
    """One document flowing through the curation stages."""

    id: str
    source: str
    text: str
    location: str
    url: str | None = None
    title: str | None = None
    created: datetime | None = None
    language: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, source: str, location: str, text: str, **fields: Any) -> Document:
        """A document whose id is derived from ``source`` and ``location``."""
        return cls(id=doc_id(source, location), source=source, text=text, location=location,
                   **fields)

    @property
    def nbytes(self) -> int:
        return len(self.text.encode("utf-8", "surrogatepass"))


SCHEMA_VERSION = 2
SCORE_TYPE = pa.list_(pa.struct([pa.field("name", pa.string(), nullable=False),
                                 pa.field("value", pa.float64(), nullable=False)]))

CURATED_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("location", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("created", pa.timestamp("us", tz="UTC")),
    pa.field("language", pa.string()),
    pa.field("scores", SCORE_TYPE),
    pa.field("meta", pa.string()),
])

REJECTED_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    # "<stage>:<rule>", e.g. "quality:gopher/too_few_words"
    pa.field("reason", pa.string(), nullable=False),
    pa.field("location", pa.string(), nullable=False),
    pa.field("chars", pa.int64(), nullable=False),
    pa.field("detail", pa.string()),  # JSON: measured values, survivor id; never document text
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("file", pa.string(), nullable=False),
    pa.field("offset", pa.int64()),  # byte offset in the (decompressed) stream, where known
    pa.field("record", pa.string()),  # record key or line number, where known
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string()),
])


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in document meta")


def dump_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)


def scores_dict(value: list[dict[str, Any]] | None) -> dict[str, float]:
    """A ``scores`` cell as read by pyarrow (a list of {name, value}) as a dict."""
    return {s["name"]: s["value"] for s in value or []}


def documents_to_table(docs: list[Document]) -> pa.Table:
    """Column-major conversion of documents to the curated schema."""
    return pa.table({
        "id": [d.id for d in docs],
        "source": [d.source for d in docs],
        "text": [d.text for d in docs],
        "location": [d.location for d in docs],
        "url": [d.url for d in docs],
        "title": [d.title for d in docs],
        "created": [d.created for d in docs],
        "language": [d.language for d in docs],
        "scores": [[{"name": k, "value": v} for k, v in d.scores.items()] for d in docs],
        "meta": [dump_json(d.meta) if d.meta else None for d in docs],
    }, schema=CURATED_SCHEMA)


def table_to_documents(table: pa.Table) -> list[Document]:
    """Inverse of :func:`documents_to_table` for one record batch or table."""
    cols = table.to_pydict()
    return [
        Document(
            id=cols["id"][i], source=cols["source"][i], text=cols["text"][i],
            location=cols["location"][i], url=cols["url"][i], title=cols["title"][i],
            created=cols["created"][i], language=cols["language"][i],
            scores=scores_dict(cols["scores"][i]),
            meta=json.loads(cols["meta"][i]) if cols["meta"][i] else {},
        )
        for i in range(table.num_rows)
    ]
