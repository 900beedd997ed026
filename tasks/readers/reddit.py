"""Pushshift-style Reddit dumps: NDJSON compressed with zstd and long windows (``RC_*.zst``
comments, ``RS_*.zst`` submissions; plain ``.ndjson``/``.jsonl`` also read).

One JSON object per line; a line that is not valid UTF-8 or JSON is quarantined with its line
number and the reader goes on with the next one. A truncated zstd stream keeps every complete
line before the cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import accumulate
from typing import IO, Any, Literal

import fsspec
import zstandard
from lmforge.tasks.readers.base import (
    InputPartition,
    ReadContext,
    SourceBase,
    SourceSpec,
    Split,
    byte_ranges,
    strides,
)
from lmforge.tasks.schema import Document
from pydantic import Field

# Pushshift dumps are written with --long=31: the decoder must accept a 2 GiB window.
MAX_WINDOW = 2**31
_REMOVED = frozenset({"[deleted]", "[removed]", ""})


class RedditSource(SourceBase):
    """Pushshift monthly dumps of comments and submissions."""

    kind: Literal["reddit"]
    min_score: int | None = Field(
        default=1, description="drop items scored below this (None keeps all); Reddit starts "
        "every item at 1, so the default drops only downvoted ones")
    bots: list[str] = Field(
        default=["AutoModerator", "[deleted]"],
        description="authors whose items are dropped (bots; '[deleted]' = deleted accounts)")
    webtext_min_karma: int | None = Field(
        default=3, description="outbound links of submissions with at least this score go to "
        "the WebText URL list (Radford et al. 2019 used 3); null writes no list")


def splits(url: str, size: int, source: RedditSource) -> list[Split]:
    """A zstd stream cannot be entered in the middle: big dumps are split by record (each piece
    decompresses the stream, which is fast, and parses only its own lines, which is not).
    Uncompressed NDJSON splits into byte ranges."""
    if url.endswith((".zst", ".zstd")):
        return strides(size, source.split_bytes)
    return byte_ranges(size, source.split_bytes)


class TruncatedStream(Exception):
    """The compressed stream ended inside a frame."""


def _zstd_chunks(raw: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Decompressed data of every zstd frame in ``raw``; raises TruncatedStream at a cut."""
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    dobj, fed = dctx.decompressobj(), False
    while chunk := raw.read(chunk_size):
        while chunk:
            fed = True
            if out := dobj.decompress(chunk):
                yield out
            if dobj.eof:  # frame finished: the rest of the chunk starts the next frame
                chunk, dobj, fed = dobj.unused_data, dctx.decompressobj(), False
            else:
                chunk = b""
    if fed and not dobj.eof:
        raise TruncatedStream("zstd stream ends inside a frame")


def _plain_chunks(raw: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := raw.read(chunk_size):
        yield chunk


def iter_lines(path: str, start: int = 0, end: int | None = None, piece: int = 0,
               pieces: int = 1) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of an NDJSON file, zstd-compressed (offsets in the
    decompressed stream) or plain (the lines that start in [start, end)). With ``pieces`` > 1
    only every ``pieces``-th line from ``piece`` on is returned; the others are sliced past
    without a Python loop per line."""
    with fsspec.open(path, "rb") as raw:
        if path.endswith((".zst", ".zstd")):
            chunks, offset = _zstd_chunks(raw), 0
        else:
            raw.seek(max(0, start - 1))
            # a range starts at the first line that begins inside it
            if start > 0 and raw.read(1) != b"\n":
                raw.readline()
            chunks, offset = _plain_chunks(raw), raw.tell()
        pending, number = b"", 0
        for chunk in chunks:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            first = (piece - number) % pieces
            starts = list(accumulate((len(x) + 1 for x in lines), initial=offset))
            for i in range(first, len(lines), pieces):
                if end is not None and starts[i] >= end:
                    return
                yield number + i + 1, starts[i], lines[i]
            number += len(lines)
            offset = starts[-1]
        if pending and (end is None or offset < end) and number % pieces == piece:
            yield number + 1, offset, pending


def _text_of(item: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a comment or a submission."""
    if "body" in item:
        return "comment", str(item.get("body") or "")
    title = str(item.get("title") or "")
    selftext = str(item.get("selftext") or "")
    if selftext in _REMOVED:
        return "submission", title
    return "submission", f"{title}\n\n{selftext}" if title else selftext


def _webtext(item: dict[str, Any], url: str | None, source: RedditSource, ctx: ReadContext,
             key: str) -> None:
    """WebText's rule: the outbound link of a submission with enough karma is worth crawling."""
    score = item.get("score")
    if (url and source.webtext_min_karma is not None and isinstance(score, int)
            and score >= source.webtext_min_karma and url.startswith(("http://", "https://"))
            and "reddit.com/" not in url and "redd.it/" not in url):
        ctx.side("webtext", {"url": url, "score": score, "subreddit": item.get("subreddit"),
                             "submission": key})


def _to_document(item: dict[str, Any], source: RedditSource, ctx: ReadContext, line: int
                 ) -> Document | None:
    key = str(item.get("name") or item.get("id") or f"line-{line}")
    kind, text = _text_of(item)
    if kind == "comment" and text.strip() in _REMOVED:
        ctx.skip(key, "deleted")
        return None
    if kind == "submission" and str(item.get("title") or "") in _REMOVED:
        ctx.skip(key, "deleted")
        return None
    if str(item.get("author")) in source.bots:
        ctx.skip(key, "bot_author")
        return None
    score = item.get("score")
    if source.min_score is not None and isinstance(score, int) and score < source.min_score:
        ctx.skip(key, "low_score", score=score, min_score=source.min_score)
        return None
    created = item.get("created_utc")
    subreddit = item.get("subreddit")
    meta: dict[str, Any] = {"reddit_id": key, "kind": kind, "subreddit": subreddit,
                            "score": score}
    url = None
    if kind == "submission":
        url = item.get("url") if not item.get("is_self") else None
        meta["num_comments"] = item.get("num_comments")
        _webtext(item, url, source, ctx, key)
    permalink = item.get("permalink")
    return Document.new(
        "reddit", ctx.location(key), text.strip(),
        url=url or (f"https://www.reddit.com{permalink}" if permalink else None),
        title=item.get("title") if kind == "submission" else None,
        created=datetime.fromtimestamp(int(float(created)), UTC) if created else None,
        meta=meta,
    )


def read_reddit(part: InputPartition, source: RedditSource, ctx: ReadContext
                ) -> Iterator[Document]:
    line_no, offset = 0, 0
    try:
        for line_no, offset, raw in iter_lines(part.path, part.start, part.end, part.piece,
                                               part.pieces):
            if not raw.strip():
                continue
            item = _parse(raw, ctx, offset, line_no)
            if item is not None and (doc := _to_document(item, source, ctx, line_no)):
                yield doc
    except (TruncatedStream, zstandard.ZstdError, EOFError) as err:
        if part.piece == 0:  # every strided piece sees the cut; one reports it
            ctx.bad("reddit/truncated_stream", offset=offset, record=f"after line {line_no}",
                    detail=str(err))
    except OSError as err:
        if part.piece == 0:
            ctx.bad("reddit/unreadable_file", detail=str(err))


def _parse(raw: bytes, ctx: ReadContext, offset: int, line_no: int) -> dict[str, Any] | None:
    try:
        item = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        ctx.bad("reddit/invalid_utf8", offset=offset, record=f"line {line_no}", detail=str(err))
        return None
    except json.JSONDecodeError as err:
        ctx.bad("reddit/invalid_json", offset=offset, record=f"line {line_no}", detail=str(err))
        return None
    if not isinstance(item, dict):
        ctx.bad("reddit/not_an_object", offset=offset, record=f"line {line_no}")
        return None
    return item


# A comment is short: Gopher's 50-word minimum would drop nearly all of them, and language
# identification is unsure of one sentence, so only the language is checked.
SOURCE = SourceSpec("reddit", RedditSource, splits, read_reddit, quality={
    "gopher": {"min_words": 5, "min_stop_words": 1}, "repetition": None, "social": {},
    "language": {"min_score": None}})
