"""Rules for short user-written text (Reddit comments): the Gopher rules suit pages, but a
comment is judged by different tells — a post that is only links, or key-mashing."""

from __future__ import annotations

import re

from tasks.base import DocFilter, Verdict
from tasks.filters.text import words
from tasks.schema import Document

_URL = re.compile(r"https?://\S+|www\.\S+")
_RUN = re.compile(r"(.)\1+", re.DOTALL)


class UrlRatioFilter(DocFilter):
    """At most half of the words may be links (link dumps, spam)."""

    name = "social"

    def __init__(self, *, max_ratio: float = 0.5) -> None:
        self.max_ratio = max_ratio

    def keep(self, doc: Document) -> Verdict:
        urls = len(_URL.findall(doc.text))
        ratio = urls / max(1, len(doc.text.split()))
        if ratio > self.max_ratio:
            return Verdict.drop("url_ratio", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class RepeatedCharactersFilter(DocFilter):
    """No character repeated more than ``max_run`` times in a row ("lollllllll", "!!!!!!!!")."""

    name = "social"

    def __init__(self, *, max_run: int = 10) -> None:
        self.max_run = max_run

    def keep(self, doc: Document) -> Verdict:
        longest = max((len(m.group()) for m in _RUN.finditer(doc.text)
                       if not m.group(1).isspace()), default=0)
        if longest > self.max_run:
            return Verdict.drop("repeated_characters", run=longest)
        return Verdict.ok(run=longest)


class UniqueWordsFilter(DocFilter):
    """At least ``min_ratio`` of the words must be distinct ("spam spam spam spam")."""

    name = "social"

    def __init__(self, *, min_ratio: float = 0.3, min_words: int = 10) -> None:
        self.min_ratio, self.min_words = min_ratio, min_words

    def keep(self, doc: Document) -> Verdict:
        ws = [w.lower() for w in words(doc.text)]
        if len(ws) < self.min_words:
            return Verdict.ok(words=len(ws))
        ratio = len(set(ws)) / len(ws)
        if ratio < self.min_ratio:
            return Verdict.drop("repetitive", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))
