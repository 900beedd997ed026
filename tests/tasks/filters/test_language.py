from __future__ import annotations

from lmforge.infra.make_sample import Prose
from lmforge.tasks.filters.language import LanguageFilter
from lmforge.tasks.schema import Document


def test_english_is_kept_with_language_and_score_stored() -> None:
    doc = Document.new("wikipedia", "x#1", " ".join(Prose(1).article("Arvel", 2)))
    verdict = LanguageFilter(keep=["en"]).keep(doc)
    assert verdict.keep and doc.language == "en" and doc.scores["language_score"] > 0.9


def test_other_languages_and_unsure_scores_are_dropped() -> None:
    german = Document.new("commoncrawl", "x#2", "Der Fluss fließt langsam durch das Tal, und "
                          "die Bauern bringen ihre Äpfel jeden Samstag auf den Markt.")
    verdict = LanguageFilter(keep=["en"]).keep(german)
    assert verdict.reason == "not_in_keep_list" and german.language == "de"
    assert LanguageFilter(keep=None, min_score=None).keep(german).keep
    unsure = Document.new("reddit", "x#3", "ok")
    verdict = LanguageFilter(keep=None, min_score=0.99).keep(unsure)
    assert verdict.reason == "low_score" and unsure.scores["language_score"] < 0.99
