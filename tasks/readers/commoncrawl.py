"""CommonCrawl WARC (HTML responses → main text with trafilatura) and WET (text already
extracted) files, gzip-compressed per record as CommonCrawl ships them, or uncompressed.

Large files are split into byte ranges: a range reads the records that *start* inside it, so
ranges can be read by different workers and every record is read exactly once. After a broken
record the reader resynchronises on the next record start and goes on.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any, Literal

import fsspec
from lmforge.tasks.readers.base import (
    InputPartition,
    ReadContext,
    SourceBase,
    SourceSpec,
    Split,
    byte_ranges,
)
from lmforge.tasks.readers.extract import ExtractTimeout, extract_text, extractor, html_pieces
from lmforge.tasks.readers.urls import load_url_set, normalise_url
from lmforge.tasks.schema import Document
from pydantic import Field
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = b"WARC/1."
SCAN_CHUNK = 1 << 20


class CommonCrawlSource(SourceBase):
    """WARC (``.warc.gz``) or WET (``.warc.wet.gz``) files."""

    kind: Literal["commoncrawl"]
    max_html_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0,
        description="responses larger than this are skipped (CommonCrawl truncates at 1 MiB; "
        "a user's own crawl may not)")
    extract_chunk_chars: int = Field(
        default=1_000_000, ge=10_000, description="longer pages are extracted in pieces of "
        "about this many characters (the body's elements in order), each under the time "
        "limit, and the texts joined")
    include_tables: bool = Field(default=False, description="keep table text when extracting")
    extract_timeout_s: float | None = Field(
        default=20.0, gt=0, description="per-page limit of HTML extraction (run in a child "
        "process); null extracts in-process without a limit")
    url_allowlist: str | None = Field(
        default=None, description="keep only pages whose URL is listed: a file of URLs (.txt, "
        ".txt.gz, or Parquet with a `url` column), or 'reddit' for the WebText list that this "
        "run's reddit sources produce (outbound links of submissions with enough karma)")


def splits(url: str, size: int, source: CommonCrawlSource) -> list[Split]:
    return byte_ranges(size, source.split_bytes)


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


def _is_record_start(data: bytes, gz: bool) -> bool:
    if not gz:
        return data.startswith(WARC_MAGIC)
    try:
        return zlib.decompressobj(31).decompress(data[:8192], 16).startswith(WARC_MAGIC)
    except zlib.error:
        return False


def find_record_start(fh: IO[bytes], pos: int, end: int | None, gz: bool) -> int | None:
    """The first offset >= ``pos`` (and < ``end``) where a WARC record begins."""
    magic, skip = (GZIP_MAGIC, 0) if gz else (b"\n" + WARC_MAGIC, 1)
    while end is None or pos < end:
        fh.seek(pos)
        data = fh.read(SCAN_CHUNK + 8192)
        i = data.find(magic)
        while 0 <= i < SCAN_CHUNK:
            start = pos + i + skip
            if end is not None and start >= end:
                return None
            if _is_record_start(data[i + skip:], gz):
                return start
            i = data.find(magic, i + 1)
        if len(data) <= SCAN_CHUNK:
            return None
        pos += SCAN_CHUNK
    return None


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


class _PageReader:
    """Turns one record into a document, or reports why not."""

    def __init__(self, source: CommonCrawlSource, ctx: ReadContext) -> None:
        self.source, self.ctx = source, ctx
        self.allow = load_url_set(source.url_allowlist) if source.url_allowlist else None
        self.extract = extractor(source.extract_timeout_s) or extract_text

    def __call__(self, record: ArcWarcRecord, key: str) -> Document | None:
        fields = _common_fields(record)
        if self.allow is not None and normalise_url(fields["url"] or "") not in self.allow:
            self.ctx.skip(key, "url_not_in_allowlist")
            return None
        if record.rec_type == "conversion":
            return self._conversion(record, key, fields)
        return self._response(record, key, fields)

    def _response(self, record: ArcWarcRecord, key: str, fields: dict[str, Any]
                  ) -> Document | None:
        ctype = record.http_headers.get_header("Content-Type") or ""
        if not ctype.lower().startswith(_HTML_TYPES):  # images, PDFs, robots.txt, redirects
            self.ctx.saw(f"response {ctype.split(';')[0].strip() or 'without Content-Type'}")
            return None
        payload = record.content_stream().read(self.source.max_html_bytes + 1)
        if len(payload) > self.source.max_html_bytes:
            self.ctx.skip(key, "too_large", bytes=len(payload))
            return None
        html, charset = decode_html(payload, ctype)
        text = self._extract(html, fields["url"], key)
        if text is None:
            return None
        return Document.new("commoncrawl", self.ctx.location(key), text,
                            meta={"warc_record_id": key, "charset": charset,
                                  "status": record.http_headers.get_statuscode()}, **fields)

    def _extract(self, html: str, url: str | None, key: str) -> str | None:
        limit = self.source.extract_chunk_chars
        pieces = [html] if len(html) <= limit else html_pieces(html, limit)
        try:
            texts = [self.extract(piece, url, self.source.include_tables) for piece in pieces]
            text = "\n".join(t for t in texts if t)
        except ExtractTimeout as err:
            self.ctx.bad("commoncrawl/extract_timeout", record=key, detail=str(err))
            return None
        except ValueError as err:
            self.ctx.bad("commoncrawl/extract_failed", record=key, detail=str(err))
            return None
        if not text:
            self.ctx.skip(key, "no_main_text")
        return text or None

    def _conversion(self, record: ArcWarcRecord, key: str, fields: dict[str, Any]
                    ) -> Document | None:
        text = record.content_stream().read().decode("utf-8", "replace").strip()
        if not text:
            self.ctx.skip(key, "empty")
            return None
        return Document.new("commoncrawl", self.ctx.location(key), text,
                            meta={"warc_record_id": key}, **fields)


def _broken(record: ArcWarcRecord) -> str | None:
    length = _header(record, "Content-Length") or ""
    if not length.isdigit():
        return f"Content-Length {length!r}"
    if record.rec_type == "response" and record.http_headers is None:
        return "response without HTTP headers"
    return None


def _read_range(fh: IO[bytes], part: InputPartition, read_page: _PageReader, ctx: ReadContext,
                gz: bool) -> Iterator[Document]:
    pos = part.start if part.start == 0 else find_record_start(fh, part.start, part.end, gz)
    seen: dict[str, int] = {}  # record id -> offset: a document's id comes from its record id
    while pos is not None and (part.end is None or pos < part.end):
        fh.seek(pos)
        records = ArchiveIterator(fh)
        try:
            for record in records:
                key = _header(record, "WARC-Record-ID") or f"offset-{pos}"
                if problem := _broken(record):
                    ctx.bad("commoncrawl/broken_record", offset=pos, record=key, detail=problem)
                elif record.rec_type not in ("response", "conversion"):
                    ctx.saw(f"{record.rec_type} record")
                elif key in seen:  # a copy of a record (real WARCs have them): one document
                    ctx.skip(f"{key}@{pos}", "duplicate_record_id", first_offset=seen[key])
                else:
                    seen[key] = pos
                    doc = read_page(record, key)
                    while record.raw_stream.read(SCAN_CHUNK):  # skipped or partly read
                        pass
                    if record.raw_stream.limit > 0:  # the stream ended inside this record
                        ctx.bad("commoncrawl/truncated_record", offset=pos, record=key)
                        return
                    if doc is not None:
                        yield doc
                # get_record_offset() reads to the record's end: only after its content
                pos = records.get_record_offset() + records.get_record_length()
                if part.end is not None and pos >= part.end:
                    return
            return
        except (ArchiveLoadFailed, zlib.error, EOFError, ValueError) as err:
            ctx.bad("commoncrawl/broken_record", offset=pos, detail=str(err)[:300])
            pos = find_record_start(fh, pos + 1, part.end, gz)


def read_commoncrawl(part: InputPartition, source: CommonCrawlSource, ctx: ReadContext
                     ) -> Iterator[Document]:
    try:
        fh = fsspec.open(part.path, "rb").open()
    except OSError as err:
        ctx.bad("commoncrawl/unreadable_file", detail=str(err))
        return
    with fh:
        head = fh.read(8192)
        if not head:
            ctx.bad("commoncrawl/empty_file")
            return
        gz = head.startswith(GZIP_MAGIC)
        if part.start == 0 and not _is_record_start(head, gz):
            ctx.bad("commoncrawl/not_a_warc", detail=repr(head[:40]))
            return
        yield from _read_range(fh, part, _PageReader(source, ctx), ctx, gz)


# The web gets C4's line cleaning and page rules and FineWeb's rules on top of Gopher's, as
# FineWeb combined them: without C4's terminal-punctuation line rule (FineWeb found it removed
# too much and has its own line-punctuation rule), and without C4's curly-bracket page rule,
# which removes every page with a code sample (documentation, Q&A; 100 of 466 pages of the
# Python documentation in benchmarks/decisions.py).
SOURCE = SourceSpec("commoncrawl", CommonCrawlSource, splits, read_commoncrawl, quality={
    "c4": {"terminal_punctuation": False, "curly_bracket": False}, "fineweb": {}})
