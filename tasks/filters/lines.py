"""Line-level cleaning: rules that remove lines and keep the rest of the document."""

from __future__ import annotations

import re

from lmforge.tasks.base import DocRewriter, Rewrite, RuleParams
from lmforge.tasks.schema import Document
from pydantic import Field

# Headings of books and long texts: "CHAPTER XIV", "BOOK II.", "PART THE FIRST", "VOLUME I",
# a bare roman numeral.
_HEADING = re.compile(
    r"^\W*(?:(?:CHAPTER|BOOK|PART|VOLUME|SECTION|ACT|SCENE|CANTO|STAVE|LETTER|EPILOGUE|"
    r"PROLOGUE|PREFACE|INTRODUCTION|CONCLUSION|APPENDIX|CONTENTS|FINIS|THE END)\b[\s.:]*"
    r"(?:[IVXLCDM]+|\d+|[A-Z]+(?:[- ][A-Z]+)?)?|[IVXLCDM]+)\W*$")


class UppercaseLinesRemover(DocRewriter):
    """Remove all-capital lines (the survey, §2.1: "drop all-caps lines"): banners, navigation,
    shouting. A line counts when it has at least ``min_letters`` letters and none is lower-case;
    headings ("CHAPTER XIV", "BOOK II", roman numerals) are not shouting and stay."""

    name = "uppercase"

    class Params(RuleParams):
        min_letters: int | None = Field(10, description="all-caps lines with at least this "
                                        "many letters are removed (the survey's rule); null "
                                        "keeps them")
        keep_title_lines: bool = Field(
            False, description="also keep a short all-caps line (up to 6 words) that stands "
            "alone between blank lines: a title or heading (on for books)")

    def _is_caps(self, line: str) -> bool:
        letters = [c for c in line if c.isalpha()]
        return len(letters) >= self.params.min_letters and all(c.isupper() for c in letters)

    def _heading(self, lines: list[str], i: int) -> bool:
        line = lines[i].strip()
        if _HEADING.match(line):
            return True
        alone = (i == 0 or not lines[i - 1].strip()) and (
            i + 1 == len(lines) or not lines[i + 1].strip())
        return self.params.keep_title_lines and alone and len(line.split()) <= 6

    def rewrite(self, doc: Document) -> Rewrite:
        lines = doc.text.split("\n")
        kept, removed = [], 0
        for i, line in enumerate(lines):
            if self._is_caps(line) and not self._heading(lines, i):
                removed += 1
            else:
                kept.append(line)
        if not removed:
            return Rewrite(doc.text)
        return Rewrite("\n".join(kept), {"lines_removed": removed})


RULES = [UppercaseLinesRemover]
