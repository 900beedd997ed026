"""Project Gutenberg plain-text books (and other plain ``.txt`` books).

The Gutenberg header and licence footer are cut at their START/END markers, whose wording has
changed over the decades; title, author, language and ebook number come from the header.
Hard-wrapped lines are joined into paragraphs. A text without markers is kept whole.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from typing import Literal

import fsspec
from lmforge.tasks.readers.base import (
    WHOLE,
    InputPartition,
    ReadContext,
    SourceBase,
    SourceSpec,
    Split,
)
from lmforge.tasks.schema import Document
from pydantic import Field

# Marker variants seen in the Gutenberg collection, 1990s to today:
#   *** START OF THE PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***
#   *** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***
#   ***START OF THE PROJECT GUTENBERG EBOOK ...***, *END*THE SMALL PRINT! ... ENDS*
_START = re.compile(
    r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*$"
    r"|^\s*\*END\*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE,
)
_END = re.compile(
    r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG E-?BOOK.*$"
    r"|^\s*End of (the )?Project Gutenberg'?s? .*$",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD = re.compile(r"^(Title|Author|Language|Release Date|EBook-No\.)\s*:\s*(.+)$",
                    re.IGNORECASE | re.MULTILINE)
_EBOOK_NO = re.compile(r"\[E-?Book #(\d+)\]|EBook-No\.\s*:\s*(\d+)", re.IGNORECASE)
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


class BooksSource(SourceBase):
    """Project Gutenberg ``.txt`` books, as files or inside ``.zip`` archives."""

    kind: Literal["books"]
    min_chars: int = Field(default=1, description="books shorter than this after stripping are "
                           "skipped as empty")
    max_book_bytes: int = Field(default=64 * 1024 * 1024, gt=0,
                                description="larger books (or archive members) are skipped")


def splits(url: str, size: int, source: BooksSource) -> list[Split]:
    return WHOLE  # a book is one document; archives hold a handful


def _decode(raw: bytes) -> tuple[str, str]:
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any byte string")


def strip_gutenberg(text: str) -> tuple[str, dict[str, str], bool]:
    """(body, header fields, whether Gutenberg markers were found)."""
    start, end = _START.search(text), None
    if start is None:
        return text, {}, False
    end = _END.search(text, start.end())
    header = text[: start.start()]
    body = text[start.end(): end.start() if end else len(text)]
    fields = {m.group(1).lower(): m.group(2).strip() for m in _FIELD.finditer(header)}
    number = _EBOOK_NO.search(header)
    if number:
        fields["ebook"] = number.group(1) or number.group(2)
    return body, fields, True


def unwrap_paragraphs(text: str) -> str:
    """Join hard-wrapped lines; paragraphs stay separated by one blank line."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    joined = (" ".join(line.strip() for line in p.splitlines() if line.strip())
              for p in paragraphs)
    return "\n\n".join(p for p in joined if p)


def _book(raw: bytes, name: str, source: BooksSource, ctx: ReadContext) -> Document | None:
    if b"\0" in raw[:8192]:
        ctx.bad("books/binary_file", record=name)
        return None
    text, encoding = _decode(raw)
    body, fields, marked = strip_gutenberg(text)
    body = unwrap_paragraphs(body)
    key = f"{name}:{fields['ebook']}" if "ebook" in fields else name
    if len(body) < source.min_chars:
        ctx.skip(key, "empty")
        return None
    return Document.new(
        "books", ctx.location(key), body, title=fields.get("title"),
        language=_language_code(fields.get("language")),
        url=f"https://www.gutenberg.org/ebooks/{fields['ebook']}" if "ebook" in fields else None,
        meta={"author": fields.get("author"), "ebook": fields.get("ebook"),
              "gutenberg": marked, "encoding": encoding},
    )


def _zip_members(part: InputPartition, source: BooksSource, ctx: ReadContext
                 ) -> Iterator[tuple[str, bytes]]:
    with fsspec.open(part.path, "rb") as fh, zipfile.ZipFile(fh) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.lower().endswith(".txt"):
                continue
            if info.file_size > source.max_book_bytes:
                ctx.skip(info.filename, "too_large", bytes=info.file_size)
                continue
            with archive.open(info) as member:
                yield info.filename, member.read(source.max_book_bytes + 1)


def read_books(part: InputPartition, source: BooksSource, ctx: ReadContext) -> Iterator[Document]:
    name = part.rel.rsplit("/", 1)[-1]
    try:
        if part.path.lower().endswith(".zip"):
            members: Iterator[tuple[str, bytes]] = _zip_members(part, source, ctx)
        elif part.path.lower().endswith(".txt"):
            with fsspec.open(part.path, "rb") as fh:
                raw = fh.read(source.max_book_bytes + 1)
            if not raw:
                ctx.bad("books/empty_file")
                return
            members = iter([(name, raw)])
        else:
            return
        for member, raw in members:
            if (doc := _book(raw, member, source, ctx)) is not None:
                yield doc
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        ctx.bad("books/unreadable_file", detail=str(err))


_LANGUAGES = {"english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it",
              "portuguese": "pt", "dutch": "nl", "finnish": "fi", "chinese": "zh", "latin": "la"}


def _language_code(name: str | None) -> str | None:
    if not name:
        return None
    return _LANGUAGES.get(name.strip().lower(), name.strip().lower())


# A novel has far more than 100,000 words, and long narrative text repeats phrases ("said the
# old man") far more than the web pages the Gopher n-gram thresholds were tuned on: books keep
# the line/paragraph and top n-gram repetition rules only.
# A book's title and part headings stand alone in capitals ("PRIDE AND PREJUDICE").
SOURCE = SourceSpec("books", BooksSource, splits, read_books, quality={
    "gopher": {"max_words": None, "min_words": 1000}, "repetition": {"dup_ngrams": {}},
    "uppercase_lines": {"keep_title_lines": True}})
