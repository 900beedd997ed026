"""Rules for short user-written text (Reddit comments): the Gopher rules suit pages, but a
comment is judged by different tells — a post that is only links, or key-mashing."""

from __future__ import annotations

import re
from typing import ClassVar

from lmforge.tasks.base import DocFilter, RuleParams, Verdict
from lmforge.tasks.filters.text import words
from lmforge.tasks.schema import Document
from pydantic import Field

_URL = re.compile(r"https?://\S+|www\.\S+")
_RUN = re.compile(r"(.)\1+", re.DOTALL)


class UrlRatioFilter(DocFilter):
    """At most half of the words may be links (link dumps, spam)."""

    name = "social"

    class Params(RuleParams):
        max_url_ratio: float | None = Field(0.5, description="share of words that are links")

    def keep(self, doc: Document) -> Verdict:
        urls = len(_URL.findall(doc.text))
        ratio = urls / max(1, len(doc.text.split()))
        if ratio > self.params.max_url_ratio:
            return Verdict.drop("url_ratio", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


class RepeatedCharactersFilter(DocFilter):
    """No character repeated more than ``max_run`` times in a row ("lollllllll", "!!!!!!!!")."""

    name = "social"

    class Params(RuleParams):
        max_repeated_chars: int | None = Field(10, description="longest run of one character")

    def keep(self, doc: Document) -> Verdict:
        longest = max((len(m.group()) for m in _RUN.finditer(doc.text)
                       if not m.group(1).isspace()), default=0)
        if longest > self.params.max_repeated_chars:
            return Verdict.drop("repeated_characters", run=longest)
        return Verdict.ok(run=longest)


class UniqueWordsFilter(DocFilter):
    """At least ``min_ratio`` of the words must be distinct ("spam spam spam spam")."""

    name = "social"

    class Params(RuleParams):
        min_unique_word_ratio: float | None = Field(0.3, description="distinct words per word")
        unique_words_from: int = Field(10, ge=1, description="shorter texts are not judged")
        switches: ClassVar[tuple[str, ...]] = ("min_unique_word_ratio",)

    def keep(self, doc: Document) -> Verdict:
        ws = [w.lower() for w in words(doc.text)]
        if len(ws) < self.params.unique_words_from:
            return Verdict.ok(words=len(ws))
        ratio = len(set(ws)) / len(ws)
        if ratio < self.params.min_unique_word_ratio:
            return Verdict.drop("repetitive", ratio=round(ratio, 4))
        return Verdict.ok(ratio=round(ratio, 4))


RULES = [UrlRatioFilter, RepeatedCharactersFilter, UniqueWordsFilter]
