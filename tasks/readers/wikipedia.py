"""MediaWiki ``pages-articles*.xml.bz2`` dumps, streamed page by page.

The decompressed XML is cut into ``<page>…</page>`` chunks line by line (the dump writer puts
both tags on lines of their own) and each chunk is parsed alone, so a malformed page is
quarantined and the parser resynchronises on the next page; memory holds one page at a time.
"""

from __future__ import annotations

import bz2
import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Literal

import fsspec
import mwparserfromhell
from pydantic import Field

from tasks.readers.base import InputPartition, ReadContext, SourceBase, Split, byte_ranges
from tasks.schema import Document

# English-Wikipedia disambiguation templates (Template:Disambiguation and its redirects/variants).
_DISAMBIGUATION = re.compile(
    r"\{\{\s*(disambig\w*|dab|hndis|geodis|shipindex|set index article|[\w ]+ disambiguation)"
    r"\s*(\||\}\})",
    re.IGNORECASE,
)
# A bz2 stream header: "BZh" + block size digit + the block magic (the BCD digits of pi).
_BZ2_STREAM = re.compile(rb"BZh[1-9]1AY&SY")
SCAN_CHUNK = 1 << 20
_DROP_TAGS = frozenset({"ref", "table", "gallery", "math", "references", "timeline", "score",
                        "syntaxhighlight", "imagemap", "templatestyles"})
_DROP_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
_INTERLANGUAGE = re.compile(r"^:?[a-z]{2,3}(-[a-z]+)?:", re.IGNORECASE)


class WikipediaSource(SourceBase):
    """A MediaWiki XML dump (``*-pages-articles*.xml.bz2``; ``.xml`` also read)."""

    kind: Literal["wikipedia"]
    namespaces: list[int] = Field(default=[0], description="page namespaces to keep; 0 = articles")
    drop_disambiguation: bool = Field(default=True, description="drop disambiguation pages")


def splits(url: str, size: int, source: WikipediaSource) -> list[Split]:
    """Byte ranges; a range reads the bz2 streams (or, uncompressed, the pages) that start in
    it. Multistream dumps (100 pages per stream) split well; a single-stream file is read whole
    by its first range."""
    return byte_ranges(size, source.split_bytes)


def find_stream_start(fh: IO[bytes], pos: int, end: int | None) -> int | None:
    """Offset of the first bz2 stream header at or after ``pos`` (and before ``end``)."""
    while end is None or pos < end:
        fh.seek(pos)
        data = fh.read(SCAN_CHUNK + 16)
        match = _BZ2_STREAM.search(data)
        if match and match.start() < SCAN_CHUNK:
            found = pos + match.start()
            return found if end is None or found < end else None
        if len(data) <= SCAN_CHUNK:
            return None
        pos += SCAN_CHUNK
    return None


def bz2_streams(fh: IO[bytes], start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    """(stream offset, decompressed bytes) of the bz2 streams that start in [start, end).

    Raises EOFError when the file ends inside a stream, OSError on corrupt data."""
    pos = start if start == 0 else find_stream_start(fh, start, end)
    if pos is None:
        return
    fh.seek(pos)
    stream_at, offset, decomp, fed = pos, pos, bz2.BZ2Decompressor(), False
    while chunk := fh.read(SCAN_CHUNK):
        data = chunk
        while data:
            fed = True
            if out := decomp.decompress(data):
                yield stream_at, out
            if not decomp.eof:
                offset += len(data)
                break
            rest = decomp.unused_data
            offset += len(data) - len(rest)
            stream_at, decomp, fed, data = offset, bz2.BZ2Decompressor(), False, rest
            if end is not None and stream_at >= end:
                return
    if fed and not decomp.eof:
        raise EOFError("bz2 stream ends before its end-of-stream marker")


def _plain_chunks(fh: IO[bytes], start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    """Uncompressed XML from the first <page> at or after ``start``, to the page that starts
    before ``end`` (the caller stops there)."""
    fh.seek(start)
    while chunk := fh.read(SCAN_CHUNK):
        yield 0, chunk


def _lines(chunks: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    pending, at = b"", 0
    for at, chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield at, line
    if pending:
        yield at, pending


def _iter_page_chunks(lines: Iterator[tuple[int, bytes]], ctx: ReadContext, start: int,
                      end: int | None, plain: bool) -> Iterator[tuple[int, str, bytes]]:
    """(offset, where, raw page XML) per page; offsets are of the bz2 stream holding the page,
    or of the page itself in uncompressed XML; ``where`` names the line the page starts on."""
    chunk: list[bytes] | None = None
    page_at, where, byte = 0, "", start
    for number, (stream_at, line) in enumerate(lines, start=1):
        at = byte if plain else stream_at
        byte += len(line) + 1
        stripped = line.strip()
        if stripped == b"<page>":
            if plain and end is not None and at >= end:
                return
            if chunk is not None:
                ctx.bad("wikipedia/unterminated_page", offset=page_at, record=where)
            chunk, page_at, where = [line], at, f"line {number}"
        elif chunk is not None:
            chunk.append(line)
            if stripped == b"</page>":
                yield page_at, where, b"\n".join(chunk)
                chunk = None
    if chunk is not None:
        ctx.bad("wikipedia/unterminated_page", offset=page_at, record=where)


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of an article: templates, refs, tables, files and categories removed; headings
    and list items kept on lines of their own."""
    code = mwparserfromhell.parse(wikitext)
    for node in code.filter_templates(recursive=False):
        _remove(code, node)
    for node in code.filter_tags(recursive=True):
        if str(node.tag).strip().lower() in _DROP_TAGS:
            _remove(code, node)
    for node in code.filter_wikilinks(recursive=True):
        title = str(node.title).strip().lower()
        if title.startswith(_DROP_LINK_PREFIXES) or _INTERLANGUAGE.match(title):
            _remove(code, node)
    for node in code.filter_comments(recursive=True):
        _remove(code, node)
    for node in code.filter_headings(recursive=False):
        code.replace(node, f"\n{node.title.strip_code().strip()}\n")
    for node in code.filter_tags(recursive=True):
        if str(node.tag) in ("li", "dt", "dd"):
            code.replace(node, "- ")
    text = code.strip_code(normalize=True, collapse=True)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _remove(code: mwparserfromhell.wikicode.Wikicode, node: object) -> None:
    with contextlib.suppress(ValueError):  # already removed with an enclosing node
        code.remove(node)


def _parse_page(raw: bytes, source: WikipediaSource, ctx: ReadContext, offset: int,
                where: str) -> Document | None:
    try:
        page = ET.fromstring(raw)
    except ET.ParseError as err:
        ctx.bad("wikipedia/malformed_xml", offset=offset, record=where, detail=str(err))
        return None
    title = page.findtext("title") or ""
    page_id = page.findtext("id")
    if not page_id:
        ctx.bad("wikipedia/page_without_id", offset=offset, record=where)
        return None
    namespace = int(page.findtext("ns") or 0)
    if namespace not in source.namespaces:
        return None  # other namespaces are not documents of this source: not counted
    wikitext = page.findtext("revision/text") or ""
    if page.find("redirect") is not None or wikitext.lstrip().lower().startswith("#redirect"):
        ctx.skip(page_id, "redirect")
        return None
    if source.drop_disambiguation and (
        title.endswith("(disambiguation)") or _DISAMBIGUATION.search(wikitext)
    ):
        ctx.skip(page_id, "disambiguation")
        return None
    timestamp = page.findtext("revision/timestamp")
    created = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) if timestamp else None
    return Document.new(
        "wikipedia", ctx.location(page_id), wikitext_to_text(wikitext), title=title,
        created=created.astimezone(UTC) if created else None,
        url=f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}" if title else None,
        meta={"page_id": page_id, "revision_id": page.findtext("revision/id")},
    )


def read_wikipedia(part: InputPartition, source: WikipediaSource, ctx: ReadContext
                   ) -> Iterator[Document]:
    try:
        fh = fsspec.open(part.path, "rb").open()
    except OSError as err:
        ctx.bad("wikipedia/unreadable_file", detail=str(err))
        return
    plain = not part.path.endswith(".bz2")
    chunks = (_plain_chunks(fh, part.start, part.end) if plain
              else bz2_streams(fh, part.start, part.end))
    offset = part.start
    with fh:
        try:
            for offset, where, raw in _iter_page_chunks(_lines(chunks), ctx, part.start,
                                                        part.end, plain):
                doc = _parse_page(raw, source, ctx, offset, where)
                if doc is not None:
                    yield doc
        except (EOFError, OSError) as err:  # truncated or corrupt bz2 stream
            ctx.bad("wikipedia/truncated_stream", offset=offset, detail=str(err))
