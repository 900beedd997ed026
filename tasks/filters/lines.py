"""Line-level cleaning: rules that remove lines and keep the rest of the document."""

from __future__ import annotations

from tasks.base import DocRewriter, Rewrite
from tasks.schema import Document


class UppercaseLinesRemover(DocRewriter):
    """Remove all-capital lines (the survey, §2.1: "drop all-caps lines"): banners, navigation,
    shouting. A line counts when it has at least ``min_letters`` letters and none is lower-case,
    so short headings such as "II." or acronyms stay."""

    name = "uppercase"

    def __init__(self, *, min_letters: int = 10) -> None:
        self.min_letters = min_letters

    def _is_caps(self, line: str) -> bool:
        letters = [c for c in line if c.isalpha()]
        return len(letters) >= self.min_letters and all(c.isupper() for c in letters)

    def rewrite(self, doc: Document) -> Rewrite:
        kept, removed = [], 0
        for line in doc.text.split("\n"):
            if self._is_caps(line):
                removed += 1
            else:
                kept.append(line)
        if not removed:
            return Rewrite(doc.text)
        return Rewrite("\n".join(kept), {"lines_removed": removed})
