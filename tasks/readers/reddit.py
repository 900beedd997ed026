"""Pushshift-style Reddit dumps: NDJSON compressed with zstd and long windows (``RC_*.zst``
comments, ``RS_*.zst`` submissions; plain ``.ndjson``/``.jsonl`` also read).

One JSON object per line; a line that is not valid UTF-8 or JSON is quarantined with its line
number and the reader goes on with the next one. A truncated zstd stream keeps every complete
line before the cut.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, Literal

import fsspec
import zstandard
from pydantic import Field

from tasks.readers.base import InputPartition, ReadContext, SourceBase
from tasks.schema import Document

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


def _open_lines(path: str) -> IO[bytes]:
    raw = fsspec.open(path, "rb").open()
    if path.endswith((".zst", ".zstd")):
        reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
            raw, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
    return raw


def _text_of(item: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a comment or a submission."""
    if "body" in item:
        return "comment", str(item.get("body") or "")
    title = str(item.get("title") or "")
    selftext = str(item.get("selftext") or "")
    if selftext in _REMOVED:
        return "submission", title
    return "submission", f"{title}\n\n{selftext}" if title else selftext


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
    try:
        stream = _open_lines(part.path)
    except OSError as err:
        ctx.bad("reddit/unreadable_file", detail=str(err))
        return
    offset, line_no = 0, 0
    with stream:
        while True:
            try:
                raw = stream.readline()
            except (zstandard.ZstdError, OSError, EOFError) as err:
                ctx.bad("reddit/truncated_stream", offset=offset, record=f"line {line_no + 1}",
                        detail=str(err))
                return
            if not raw:
                return
            line_no += 1
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                ctx.bad("reddit/invalid_utf8", offset=start, record=f"line {line_no}",
                        detail=str(err))
                continue
            except json.JSONDecodeError as err:
                ctx.bad("reddit/invalid_json", offset=start, record=f"line {line_no}",
                        detail=str(err))
                continue
            if not isinstance(item, dict):
                ctx.bad("reddit/not_an_object", offset=start, record=f"line {line_no}")
                continue
            doc = _to_document(item, source, ctx, line_no)
            if doc is not None:
                yield doc
