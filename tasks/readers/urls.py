"""URL normalisation and URL lists (the WebText allowlist)."""

from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from lmforge.model.atomic import atomic_path

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no trailing slash; the same
    page linked from Reddit and fetched by CommonCrawl compares equal."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    path = parts.path.rstrip("/") or ""
    return urlunsplit((scheme, netloc, path, parts.query, ""))


@lru_cache(maxsize=4)
def load_url_set(path: str) -> frozenset[str]:
    """Normalised URLs of a list file (once per process): Parquet with a ``url`` column, or
    text with one URL per line (optionally gzip-compressed)."""
    if path.endswith(".parquet"):
        with fsspec.open(path, "rb") as fh:
            urls = pq.read_table(fh, columns=["url"]).column("url").to_pylist()
        return frozenset(normalise_url(u) for u in urls if u)
    with fsspec.open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return frozenset(normalise_url(line) for line in raw.decode("utf-8").splitlines()
                     if line.strip())


WEBTEXT_SCHEMA = pa.schema([("url", pa.string()), ("score", pa.int64()),
                            ("subreddit", pa.string()), ("submission", pa.string())])


def merge_url_lists(parts: list[Path], out_dir: Path) -> Path | None:
    """One WebText list from the per-shard lists: one row per normalised URL, with its best
    score. Named by content hash, so a config that points at it changes when it changes."""
    best: dict[str, dict[str, object]] = {}
    for path in parts:
        for row in pq.read_table(path).to_pylist():
            key = normalise_url(row["url"])
            if key not in best or (row["score"] or 0) > (best[key]["score"] or 0):
                best[key] = {**row, "url": key}
    if not parts:
        return None
    table = pa.Table.from_pylist([best[k] for k in sorted(best)], schema=WEBTEXT_SCHEMA)
    digest = hashlib.sha256("\n".join(sorted(best)).encode()).hexdigest()[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"urls-{digest}.parquet"
    for old in out_dir.glob("urls-*.parquet"):
        if old != path:
            old.unlink()
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path
