"""CommonCrawl WARC (HTML responses → main text with trafilatura) and WET (text already
extracted) files, gzip-compressed per record as CommonCrawl ships them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import fsspec
import trafilatura
from pydantic import Field
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord

from tasks.readers.base import InputPartition, ReadContext, SourceBase
from tasks.schema import Document

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class CommonCrawlSource(SourceBase):
    """WARC (``.warc.gz``) or WET (``.warc.wet.gz``) files."""

    kind: Literal["commoncrawl"]
    max_html_bytes: int = Field(
        default=5_000_000, gt=0,
        description="responses larger than this are skipped (CommonCrawl truncates at 1 MiB)")
    include_tables: bool = Field(default=False, description="keep table text when extracting")


def decode_html(payload: bytes, content_type: str | None) -> tuple[str, str]:
    """(text, charset): the HTTP header's charset, then <meta charset>, then UTF-8, then cp1252."""
    candidates: list[str] = []
    if content_type and "charset=" in content_type.lower():
        candidates.append(content_type.lower().split("charset=")[1].split(";")[0].strip(" \"'"))
    meta = _META_CHARSET.search(payload[:4096])
    if meta:
        candidates.append(meta.group(1).decode("ascii", "ignore").lower())
    candidates += ["utf-8", "cp1252"]
    for charset in candidates:
        try:
            return payload.decode(charset), charset
        except (UnicodeDecodeError, LookupError):
            continue
    return payload.decode("latin-1"), "latin-1"


def _header(record: ArcWarcRecord, name: str) -> str | None:
    value = record.rec_headers.get_header(name)
    return str(value) if value is not None else None


def _common_fields(record: ArcWarcRecord) -> dict[str, Any]:
    date = _header(record, "WARC-Date")
    language = _header(record, "WARC-Identified-Content-Language")
    return {
        "url": _header(record, "WARC-Target-URI"),
        "created": datetime.fromisoformat(date.replace("Z", "+00:00")) if date else None,
        "language": language.split(",")[0] if language else None,
    }


def _from_response(record: ArcWarcRecord, source: CommonCrawlSource, ctx: ReadContext,
                   key: str) -> Document | None:
    content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
    if not content_type or not content_type.lower().startswith(_HTML_TYPES):
        return None  # images, PDFs, robots.txt: not documents of this reader
    payload = record.content_stream().read(source.max_html_bytes + 1)
    if len(payload) > source.max_html_bytes:
        ctx.skip(key, "too_large", bytes=len(payload))
        return None
    html, charset = decode_html(payload, content_type)
    fields = _common_fields(record)
    text = trafilatura.extract(html, url=fields["url"], include_comments=False,
                               include_tables=source.include_tables, deduplicate=False)
    if not text:
        ctx.skip(key, "no_main_text")
        return None
    return Document.new("commoncrawl", ctx.location(key), text,
                        meta={"warc_record_id": key, "charset": charset,
                              "status": record.http_headers.get_statuscode()}, **fields)


def _from_conversion(record: ArcWarcRecord, ctx: ReadContext, key: str) -> Document | None:
    text = record.content_stream().read().decode("utf-8", "replace").strip()
    if not text:
        ctx.skip(key, "empty")
        return None
    return Document.new("commoncrawl", ctx.location(key), text, meta={"warc_record_id": key},
                        **_common_fields(record))


def read_commoncrawl(part: InputPartition, source: CommonCrawlSource, ctx: ReadContext
                     ) -> Iterator[Document]:
    try:
        stream = fsspec.open(part.path, "rb").open()
    except OSError as err:
        ctx.bad("commoncrawl/unreadable_file", detail=str(err))
        return
    with stream:
        records = ArchiveIterator(stream)
        try:
            for record in records:
                # get_record_offset() reads the record to its end: call it only where the
                # content is no longer needed.
                key = _header(record, "WARC-Record-ID") or "unknown"
                length = _header(record, "Content-Length") or ""
                if not length.isdigit() or (
                        record.rec_type == "response" and record.http_headers is None):
                    ctx.bad("commoncrawl/broken_record", offset=records.get_record_offset(),
                            record=key,
                            detail=f"WARC-Type {record.rec_type}, Content-Length {length!r}")
                    continue
                if record.rec_type == "response":
                    doc = _from_response(record, source, ctx, key)
                elif record.rec_type == "conversion":
                    doc = _from_conversion(record, ctx, key)
                else:
                    continue
                if doc is not None:
                    yield doc
        except (ArchiveLoadFailed, EOFError, OSError, ValueError) as err:
            ctx.bad("commoncrawl/broken_record", offset=records.get_record_offset(),
                    detail=str(err))
