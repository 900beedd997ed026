"""Language identification with py3langid (Lui & Baldwin 2012's langid.py model, 97 languages,
shipped inside the PyPI wheel: works offline). The language and its probability are stored on
the document before the keep-list decides, so the list can change without rescoring."""

from __future__ import annotations

from functools import lru_cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from tasks.base import DocFilter, Verdict
from tasks.schema import Document


@lru_cache(maxsize=1)
def identifier() -> LanguageIdentifier:
    """Loaded once per process (about 0.3 s)."""
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LanguageFilter(DocFilter):
    """Keep documents in the listed languages with at least ``min_score`` probability
    (FineWeb kept English at fastText score >= 0.65; the default follows it)."""

    name = "language"

    def __init__(self, *, keep: list[str] | None = None, min_score: float | None = 0.65,
                 max_chars: int = 10_000) -> None:
        self.keep_set = frozenset(keep) if keep is not None else None
        self.min_score, self.max_chars = min_score, max_chars

    def keep(self, doc: Document) -> Verdict:
        # a long book's language shows in its first pages; scoring all of it costs time only
        language, score = identifier().classify(doc.text[: self.max_chars])
        doc.language, doc.scores["language_score"] = language, float(score)
        if self.keep_set is not None and language not in self.keep_set:
            return Verdict.drop("not_in_keep_list", language=language, score=round(score, 4))
        if self.min_score is not None and score < self.min_score:
            return Verdict.drop("low_score", language=language, score=round(score, 4))
        return Verdict.ok(language=language, score=round(float(score), 4))
