"""MediaWiki XML dumps (``*-pages-articles*.xml.bz2``, multistream or not; ``.xml`` too),
streamed page by page whatever their line layout and declared encoding.

Reading goes in three layers, each holding at most one page in memory:

1. bytes: the bz2 streams that start in the partition's byte range (a multistream dump holds
   100 pages per stream, so ranges split it; offsets are the streams' own, as in the dump's
   index), or the plain file's bytes;
2. text: decoded incrementally in the dump's encoding (byte-order mark, else the XML
   declaration, else UTF-8: real dumps come in UTF-16 too); bytes that do not decode are kept
   as marks, and a page holding one is quarantined instead of read damaged;
3. pages: every ``<page>…</page>`` element found in the text (not on lines: tags need not be on
   lines of their own) is parsed alone with an XML parser, so a malformed page is quarantined
   and reading resynchronises on the next one. ``<siteinfo>`` gives the wiki's URL base and
   the local names of the file and category namespaces.

Wikitext becomes plain text in :mod:`tasks.readers.wikitext`.
"""

from __future__ import annotations

import bz2
import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO, Literal
from urllib.parse import quote, urlsplit

import fsspec
from lmforge.tasks.readers.base import (
    InputPartition,
    ReadContext,
    SourceBase,
    SourceSpec,
    Split,
    byte_ranges,
)
from lmforge.tasks.readers.wikitext import APPENDIX_SECTIONS, wikitext_to_text
from lmforge.tasks.schema import Document
from pydantic import Field

# English-Wikipedia disambiguation templates (Template:Disambiguation and its redirects/variants).
_DISAMBIGUATION = re.compile(
    r"\{\{\s*(disambig\w*|dab|hndis|geodis|shipindex|set index article|[\w ]+ disambiguation)"
    r"\s*(\||\}\})",
    re.IGNORECASE,
)
# A bz2 stream header: "BZh" + block size digit + the block magic (the BCD digits of pi).
_BZ2_STREAM = re.compile(rb"BZh[1-9]1AY&SY")
SCAN_CHUNK = 1 << 20
_PAGE_OPEN = re.compile(r"<page(?=[\s>])")
_PAGE_CLOSE = "</page>"
_SITEINFO = re.compile(r"<siteinfo>.*?</siteinfo>", re.DOTALL)
_DECLARED = re.compile(rb"""^<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_UNDECODABLE = re.compile(r"[\udc00-\udcff]")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
_UNIT = {"utf-16-le": 2, "utf-16-be": 2, "utf-32-le": 4, "utf-32-be": 4}
# MediaWiki's namespace numbers whose links are not text: Media, File, Category.
_LINK_NAMESPACE_KEYS = ("-2", "6", "14")


def _mark_undecodable(err: UnicodeDecodeError) -> tuple[str, int]:
    """Decode errors become lone surrogates (one per byte), which valid text never holds."""
    return "".join(chr(0xDC00 + b) for b in err.object[err.start:err.end]), err.end


codecs.register_error("lmforge-mark", _mark_undecodable)


class WikipediaSource(SourceBase):
    """A MediaWiki XML dump (``*-pages-articles*.xml.bz2``; ``.xml`` also read)."""

    kind: Literal["wikipedia"]
    namespaces: list[int] = Field(default=[0], description="page namespaces to keep; 0 = articles")
    drop_disambiguation: bool = Field(default=True, description="drop disambiguation pages")
    drop_sections: list[str] = Field(
        default=list(APPENDIX_SECTIONS), description="sections removed with their headings "
        "(case-insensitive titles): appendices of links and citations; [] keeps every section")


def splits(url: str, size: int, source: WikipediaSource) -> list[Split]:
    """Byte ranges; a range reads the bz2 streams (or, uncompressed, the pages) that start in
    it. Multistream dumps (100 pages per stream) split well; a single-stream file is read whole
    by its first range."""
    return byte_ranges(size, source.split_bytes)


@dataclass(frozen=True)
class SiteInfo:
    """What a dump says about its wiki."""

    encoding: str = "utf-8"
    base: str = "https://en.wikipedia.org/wiki/"
    link_namespaces: tuple[str, ...] = ()
    language: str | None = None


# --- 1. bytes -------------------------------------------------------------------------------

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


def _plain_chunks(fh: IO[bytes], start: int, unit: int) -> Iterator[tuple[int, bytes]]:
    """(file offset, bytes) from ``start`` (aligned down to the encoding's code unit)."""
    pos = start - start % unit
    fh.seek(pos)
    while chunk := fh.read(SCAN_CHUNK):
        yield pos, chunk
        pos += len(chunk)


def detect_encoding(head: bytes) -> str:
    """The encoding of an XML document from its first bytes: a byte-order mark, else the
    XML declaration (also one written in UTF-16 without a mark), else UTF-8."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if head.startswith(b"<\0?\0"):
        return "utf-16-le"
    if head.startswith(b"\0<\0?"):
        return "utf-16-be"
    declared = _DECLARED.match(head)
    if declared:
        name = declared.group(1).decode("ascii").lower()
        try:
            return codecs.lookup(name).name
        except LookupError:
            return "utf-8"
    return "utf-8"


# --- 2. text and 3. pages -------------------------------------------------------------------

@dataclass
class _Buffer:
    """Decoded text not yet cut into pages, with where each decoded chunk came from."""

    encoding: str
    plain: bool
    text: str = ""
    marks: list[tuple[int, int]] = field(default_factory=list)  # (char index, offset)
    base: int = 0  # offset of text[0] (plain files: its exact byte offset)

    def add(self, offset: int, chunk: str) -> None:
        self.marks.append((len(self.text), offset))
        self.text += chunk

    def offset(self, index: int) -> int:
        """The stream offset (bz2) or byte offset (plain) of character ``index``."""
        at, offset = 0, self.base
        for char, mark in self.marks:
            if char > index:
                break
            at, offset = char, mark
        if not self.plain:
            return offset
        return offset + len(self.text[at:index].encode(self.encoding, "surrogatepass"))

    def drop(self, upto: int) -> None:
        """Forget text before ``upto`` (keeping offsets exact)."""
        if upto <= 0:
            return
        self.base = self.offset(upto)
        self.text = self.text[upto:]
        self.marks = [(c - upto, o) for c, o in self.marks if c >= upto]


def _pages(chunks: Iterator[tuple[int, bytes]], encoding: str, plain: bool, ctx: ReadContext,
           end: int | None) -> Iterator[tuple[int, str]]:
    """(offset, page XML) of every page that starts before ``end`` (plain files)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="lmforge-mark")
    buf = _Buffer(encoding, plain)
    start: int | None = None  # index of the open page in buf.text
    for offset, raw in chunks:
        buf.add(offset, decoder.decode(raw))
        while True:
            if start is None:
                found = _PAGE_OPEN.search(buf.text)
                if found is None:
                    buf.drop(max(0, len(buf.text) - 8))  # keep what could begin "<page"
                    break
                start = found.start()
                if plain and end is not None and buf.offset(start) >= end:
                    return
            close = buf.text.find(_PAGE_CLOSE, start)
            after = _PAGE_OPEN.search(buf.text, start + 5)
            if after is not None and (close == -1 or after.start() < close):
                ctx.bad("wikipedia/unterminated_page", offset=buf.offset(start),
                        record=_title_hint(buf.text[start:after.start()]))
                start = after.start()
                continue
            if close == -1:
                buf.drop(start)
                start = 0
                break
            stop = close + len(_PAGE_CLOSE)
            yield buf.offset(start), buf.text[start:stop]
            buf.drop(stop)
            start = None
    if start is not None:
        ctx.bad("wikipedia/unterminated_page", offset=buf.offset(start),
                record=_title_hint(buf.text[start:]))


def _title_hint(xml: str) -> str | None:
    found = re.search(r"<title>(.*?)</title>", xml[:2000], re.DOTALL)
    return f"title {found.group(1)[:200]}" if found else None


@lru_cache(maxsize=64)
def site_info(path: str, fingerprint: str) -> SiteInfo:
    """The dump's encoding and ``<siteinfo>``, read from the head of the file (the first bz2
    stream of a multistream dump holds only the siteinfo)."""
    del fingerprint  # part of the cache key only: a changed file is read again
    compressed = path.endswith(".bz2")
    head = b""
    with fsspec.open(path, "rb") as fh:
        try:
            chunks = bz2_streams(fh, 0, None) if compressed else _plain_chunks(fh, 0, 1)
            for _, chunk in chunks:
                head += chunk
                if len(head) >= 1 << 16 or b"<\0/\0s\0i\0t\0e" in head or b"</site" in head:
                    break
        except (EOFError, OSError):
            pass  # the reader reports unreadable data itself
    encoding = detect_encoding(head[:256])
    text = head.decode(encoding, errors="replace")
    return _parse_siteinfo(text, encoding)


def _parse_siteinfo(text: str, encoding: str) -> SiteInfo:
    language = re.search(r"<mediawiki[^>]*\sxml:lang=\"([^\"]+)\"", text)
    found = _SITEINFO.search(text)
    if found is None:
        return SiteInfo(encoding, language=language.group(1) if language else None)
    try:
        info = ET.fromstring(re.sub(r"\sxmlns=\"[^\"]*\"", "", found.group()))
    except ET.ParseError:
        return SiteInfo(encoding, language=language.group(1) if language else None)
    base = info.findtext("base") or ""
    parts = urlsplit(base)
    prefix = f"{parts.scheme}://{parts.netloc}/wiki/" if parts.netloc else SiteInfo.base
    names = tuple(ns.text.strip() for ns in info.iter("namespace")
                  if ns.get("key") in _LINK_NAMESPACE_KEYS and ns.text)
    return SiteInfo(encoding, prefix, names, language.group(1) if language else None)


def _parse_page(raw: str, source: WikipediaSource, site: SiteInfo, ctx: ReadContext,
                offset: int) -> Document | None:
    if _UNDECODABLE.search(raw):
        ctx.bad("wikipedia/undecodable_bytes", offset=offset, record=_title_hint(raw),
                detail=f"bytes that are not {site.encoding}")
        return None
    try:
        page = ET.fromstring(raw)
    except ET.ParseError as err:
        ctx.bad("wikipedia/malformed_xml", offset=offset, record=_title_hint(raw),
                detail=str(err))
        return None
    title = page.findtext("title") or ""
    page_id = page.findtext("id")
    if not page_id:
        ctx.bad("wikipedia/page_without_id", offset=offset, record=_title_hint(raw))
        return None
    namespace = int(page.findtext("ns") or 0)
    if namespace not in source.namespaces:
        ctx.saw(f"page in namespace {namespace}")  # not a document of this source
        return None
    wikitext = page.findtext("revision/text") or ""
    if skip := _skip_reason(page, title, wikitext, source):
        ctx.skip(page_id, skip)
        return None
    timestamp = page.findtext("revision/timestamp")
    created = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) if timestamp else None
    text = wikitext_to_text(wikitext, namespaces=site.link_namespaces,
                            drop_sections=source.drop_sections)
    return Document.new(
        "wikipedia", ctx.location(page_id), text, title=title,
        created=created.astimezone(UTC) if created else None,
        url=site.base + quote(title.replace(" ", "_"), safe="/:(),'") if title else None,
        meta={"page_id": page_id, "revision_id": page.findtext("revision/id"),
              "wiki_language": site.language},
    )


def _skip_reason(page: ET.Element, title: str, wikitext: str, source: WikipediaSource
                 ) -> str | None:
    if page.find("redirect") is not None or wikitext.lstrip().lower().startswith("#redirect"):
        return "redirect"
    if source.drop_disambiguation and (
            title.endswith("(disambiguation)") or _DISAMBIGUATION.search(wikitext)):
        return "disambiguation"
    return None


def read_wikipedia(part: InputPartition, source: WikipediaSource, ctx: ReadContext
                   ) -> Iterator[Document]:
    try:
        site = site_info(part.path, part.fingerprint)
        fh = fsspec.open(part.path, "rb").open()
    except OSError as err:
        ctx.bad("wikipedia/unreadable_file", detail=str(err))
        return
    plain = not part.path.endswith(".bz2")
    chunks = (_plain_chunks(fh, part.start, _UNIT.get(site.encoding, 1)) if plain
              else bz2_streams(fh, part.start, part.end))
    offset = part.start
    with fh:
        try:
            for offset, raw in _pages(chunks, site.encoding, plain, ctx, part.end):
                doc = _parse_page(raw, source, site, ctx, offset)
                if doc is not None:
                    yield doc
        except (EOFError, OSError) as err:  # truncated or corrupt bz2 stream
            ctx.bad("wikipedia/truncated_stream", offset=offset, detail=str(err))


SOURCE = SourceSpec("wikipedia", WikipediaSource, splits, read_wikipedia)
