"""C4 rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", §2.2, and the reference code in tensorflow_datasets' c4_utils).

C4 cleans line by line and then judges the page: :class:`C4LineCleaner` removes the lines
(one reason per removed line: no terminal punctuation, fewer than 3 words, "javascript",
cookie/terms-of-use boilerplate, a "word" over 1000 characters) and strips Wikipedia-style
citation marks; the page rules then drop pages with "lorem ipsum", a curly brace, fewer than
5 sentences, or a word from a bad-words list.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import ClassVar

from lmforge.tasks.base import DocFilter, DocRewriter, Rewrite, RuleParams, Verdict
from lmforge.tasks.filters.text import logical_lines
from lmforge.tasks.schema import Document
from pydantic import Field

_PAPER = "Raffel et al. 2020, §2.2"
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                  "use of cookies", "use cookies")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=[\"')\]]*(\s|$))")


class C4LineCleaner(DocRewriter):
    """Keep only the lines C4 keeps; ``None`` or ``false`` disables a line rule."""

    name = "c4_lines"

    class Params(RuleParams):
        min_words_per_line: int | None = Field(3, description=f"lines with fewer words are "
                                               f"removed ({_PAPER})")
        max_word_length: int | None = Field(1000, description="lines with a longer 'word' are "
                                            "removed (tensorflow_datasets c4_utils)")
        terminal_punctuation: bool = Field(True, description="remove lines not ending in "
                                           f". ? ! \" ' ({_PAPER})")
        javascript: bool = Field(True, description=f"remove lines mentioning javascript "
                                 f"({_PAPER})")
        policy: bool = Field(True, description=f"remove cookie / terms-of-use lines ({_PAPER})")
        citations: bool = Field(True, description="strip Wikipedia-style citation marks like "
                                "[1] (c4_utils)")
        logical_lines: bool = Field(
            True, description="judge lines as written, not as hard-wrapped: a line that "
            "stops mid-sentence is joined with its continuation first (C4's pages came from "
            "WET files, one paragraph per line)")
        switches: ClassVar[tuple[str, ...]] = ("min_words_per_line", "max_word_length",
                                               "terminal_punctuation", "javascript", "policy")

    def _why(self, line: str) -> str | None:
        p = self.params
        words = line.split()
        if p.max_word_length is not None and any(len(w) > p.max_word_length for w in words):
            return "too_long_word"
        if p.terminal_punctuation and (not line.endswith(END_PUNCTUATION)
                                       or line.endswith(ELLIPSIS)):
            return "no_terminal_punctuation"
        if p.min_words_per_line is not None and len(words) < p.min_words_per_line:
            return "too_few_words"
        lowered = line.lower()
        if p.javascript and "javascript" in lowered:
            return "javascript"
        if p.policy and any(phrase in lowered for phrase in POLICY_PHRASES):
            return "policy"
        return None

    def rewrite(self, doc: Document) -> Rewrite:
        kept, removed = [], Counter()
        lines = logical_lines(doc.text) if self.params.logical_lines else \
            tuple(doc.text.splitlines())
        for raw in lines:
            line = raw.strip()
            if self.params.citations:
                line = _CITATION.sub("", line)
            if not line:
                continue
            why = self._why(line)
            if why is None:
                kept.append(line)
            else:
                removed[why] += 1
        text = "\n".join(kept)
        return Rewrite(text if text != doc.text else doc.text, dict(removed))


class C4LoremIpsumFilter(DocFilter):
    """Placeholder text marks an unfinished template page."""

    name = "c4"

    class Params(RuleParams):
        lorem_ipsum: bool = Field(True, description=f"drop pages with 'lorem ipsum' ({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        if "lorem ipsum" in doc.text.lower():
            return Verdict.drop("lorem_ipsum")
        return Verdict.ok()


class C4CurlyBracketFilter(DocFilter):
    """A curly brace marks code or templates in a natural-language page."""

    name = "c4"

    class Params(RuleParams):
        curly_bracket: bool = Field(True, description=f"drop pages with a curly bracket "
                                    f"({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        if "{" in doc.text:
            return Verdict.drop("curly_bracket")
        return Verdict.ok()


def count_sentences(text: str) -> int:
    return len(_SENTENCE_END.findall(text))


class C4MinSentencesFilter(DocFilter):
    """At least five sentences must be left after line cleaning."""

    name = "c4"

    class Params(RuleParams):
        min_sentences: int | None = Field(5, description=f"drop pages with fewer sentences "
                                          f"({_PAPER})")

    def keep(self, doc: Document) -> Verdict:
        n = count_sentences(doc.text)
        if n < self.params.min_sentences:
            return Verdict.drop("too_few_sentences", sentences=n)
        return Verdict.ok(sentences=n)


@lru_cache(maxsize=4)
def load_bad_words(path: str | None) -> tuple[frozenset[str], re.Pattern[str] | None]:
    """(single words, pattern of multi-word phrases) of a bad-words list: a file with one entry
    per line, or (by default) the list that ships in the better-profanity package."""
    if path is None:
        text = resources.files("better_profanity").joinpath(
            "profanity_wordlist.txt").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    entries = {w.strip().lower() for w in text.splitlines() if w.strip()}
    single = frozenset(e for e in entries if " " not in e)
    phrases = sorted(e for e in entries if " " in e)
    pattern = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, phrases)) + r")(?!\w)")
               if phrases else None)
    return single, pattern


class C4BadWordsFilter(DocFilter):
    """C4 removed any page holding an entry of a bad-words list."""

    name = "c4"

    class Params(RuleParams):
        bad_words: bool = Field(
            False, description="drop pages with a word of the bad-words list. Off by default: "
            "Dodge et al. 2021 found C4's list removed medical, LGBTQ+ and minority-dialect "
            "pages; the toxicity stage handles abuse")
        bad_words_list: str | None = Field(None, description="a word list file; null uses the "
                                           "list shipped in the better-profanity package")
        switches: ClassVar[tuple[str, ...]] = ("bad_words",)

    def __init__(self, params: RuleParams | None = None, **values: object) -> None:
        super().__init__(params, **values)
        self.words, self.phrases = load_bad_words(self.params.bad_words_list)

    def keep(self, doc: Document) -> Verdict:
        lowered = doc.text.lower()
        hit = next((w for w in _WORD.findall(lowered) if w in self.words), None)
        if hit is None and self.phrases is not None and (m := self.phrases.search(lowered)):
            hit = m.group()
        if hit is not None:
            return Verdict.drop("bad_words", entries=1)
        return Verdict.ok()


RULES = [C4LineCleaner, C4LoremIpsumFilter, C4CurlyBracketFilter, C4MinSentencesFilter,
         C4BadWordsFilter]
