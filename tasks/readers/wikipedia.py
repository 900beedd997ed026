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

from tasks.readers.base import InputPartition, ReadContext, SourceBase
from tasks.schema import Document

# English-Wikipedia disambiguation templates (Template:Disambiguation and its redirects/variants).
_DISAMBIGUATION = re.compile(
    r"\{\{\s*(disambig\w*|dab|hndis|geodis|shipindex|set index article|[\w ]+ disambiguation)"
    r"\s*(\||\}\})",
    re.IGNORECASE,
)
_DROP_TAGS = frozenset({"ref", "table", "gallery", "math", "references", "timeline", "score",
                        "syntaxhighlight", "imagemap", "templatestyles"})
_DROP_LINK_PREFIXES = ("file:", "image:", "category:", "media:")
_INTERLANGUAGE = re.compile(r"^:?[a-z]{2,3}(-[a-z]+)?:", re.IGNORECASE)


class WikipediaSource(SourceBase):
    """A MediaWiki XML dump (``*-pages-articles*.xml.bz2``; ``.xml`` also read)."""

    kind: Literal["wikipedia"]
    namespaces: list[int] = Field(default=[0], description="page namespaces to keep; 0 = articles")
    drop_disambiguation: bool = Field(default=True, description="drop disambiguation pages")


def _open_xml(path: str) -> IO[bytes]:
    raw = fsspec.open(path, "rb").open()
    return bz2.BZ2File(raw) if path.endswith(".bz2") else raw


def _iter_page_chunks(stream: IO[bytes], ctx: ReadContext) -> Iterator[tuple[int, bytes]]:
    """Yield (decompressed byte offset, raw page XML) per page; quarantine a truncated stream."""
    offset = 0
    chunk: list[bytes] | None = None
    start = 0
    try:
        for line in stream:
            stripped = line.strip()
            if stripped == b"<page>":
                if chunk is not None:
                    ctx.bad("wikipedia/unterminated_page", offset=start)
                chunk, start = [line], offset
            elif chunk is not None:
                chunk.append(line)
                if stripped == b"</page>":
                    yield start, b"".join(chunk)
                    chunk = None
            offset += len(line)
    except (EOFError, OSError) as err:  # truncated or corrupt bz2 stream
        ctx.bad("wikipedia/truncated_stream", offset=offset, detail=str(err))
        return
    if chunk is not None:
        ctx.bad("wikipedia/unterminated_page", offset=start)


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


def _parse_page(raw: bytes, source: WikipediaSource, ctx: ReadContext, offset: int
                ) -> Document | None:
    try:
        page = ET.fromstring(raw)
    except ET.ParseError as err:
        ctx.bad("wikipedia/malformed_xml", offset=offset, detail=str(err))
        return None
    title = page.findtext("title") or ""
    page_id = page.findtext("id") or f"offset-{offset}"
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
        stream = _open_xml(part.path)
    except OSError as err:
        ctx.bad("wikipedia/unreadable_file", detail=str(err))
        return
    with stream:
        for offset, raw in _iter_page_chunks(stream, ctx):
            doc = _parse_page(raw, source, ctx, offset)
            if doc is not None:
                yield doc
