from __future__ import annotations

import pytest

from tasks.pii import NER_ENTITIES, PiiConfig, PiiScrubber, resolve_ner_model
from tasks.schema import Document

PLANTED = {
    "EMAIL_ADDRESS": "jane.doe@example.com",
    "PHONE_NUMBER": "+1 (415) 555-0132",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "DE89 3704 0044 0532 0130 00",
    "IP_ADDRESS": "192.168.12.7",
    "US_SSN": "536-22-1234",
    "URL_CREDENTIALS": "https://admin:hunter2@example.org/panel",
}
LOOK_ALIKES = ["version 3.12.1", "2024-01-05", "ISBN 978-3-16-148410-0",
               "card 4111 1111 1111 1112", "built in 1845", "127.0.0.1"]


@pytest.fixture(scope="module")
def scrubber() -> PiiScrubber:
    return PiiScrubber(PiiConfig(ner_model=None))


def _doc(text: str) -> Document:
    return Document.new("commoncrawl", "x#1", text)


@pytest.mark.parametrize(("entity", "value"), sorted(PLANTED.items()))
def test_each_entity_is_replaced(scrubber: PiiScrubber, entity: str, value: str) -> None:
    out = scrubber.rewrite(_doc(f"Please contact us at {value} for details about the room."))
    assert value not in out.text
    assert f"<{entity}>" in out.text
    assert out.counts == {entity: 1}


def test_ipv6_is_replaced(scrubber: PiiScrubber) -> None:
    out = scrubber.rewrite(_doc("Server at 2001:db8::8a2e:370:7334 is down."))
    assert "2001:db8" not in out.text and out.counts == {"IP_ADDRESS": 1}


def test_look_alikes_are_left_alone(scrubber: PiiScrubber) -> None:
    text = "; ".join(LOOK_ALIKES) + "."
    out = scrubber.rewrite(_doc(text))
    assert out.text == text and not out.counts


def test_mask_and_hash_policies() -> None:
    text = "Mail jane.doe@example.com twice: jane.doe@example.com, or bob@example.com."
    masked = PiiScrubber(PiiConfig(ner_model=None, policy="mask")).rewrite(_doc(text))
    assert "@" not in masked.text and "*" in masked.text
    hashed = PiiScrubber(PiiConfig(ner_model=None, policy="hash")).rewrite(_doc(text))
    tokens = [t.strip(",.") for t in hashed.text.split() if t.startswith("<EMAIL")]
    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]  # same value, same hash
    other_doc = PiiScrubber(PiiConfig(ner_model=None, policy="hash")).rewrite(
        Document.new("commoncrawl", "y#2", text))
    assert other_doc.text != hashed.text  # salted per document: no linking across documents


def test_missing_named_model_fails_with_instructions() -> None:
    with pytest.raises(ValueError, match="pip install"):
        resolve_ner_model("en_core_web_missing")


def test_auto_without_model_warns_once(caplog) -> None:
    if resolve_ner_model("auto") is not None:
        pytest.skip("a spaCy model is installed here")
    with caplog.at_level("WARNING"):
        resolve_ner_model("auto", warn=True)
        resolve_ner_model("auto", warn=True)
    assert sum("NOT being detected" in r.message for r in caplog.records) <= 1


def test_local_spacy_model_folder_loads(tmp_path) -> None:
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    nlp.meta["name"] = "blank_test"
    nlp.to_disk(tmp_path / "model")
    scrubber = PiiScrubber(PiiConfig(ner_model=str(tmp_path / "model")))
    assert set(NER_ENTITIES) <= set(scrubber.entities)
    out = scrubber.rewrite(_doc("Write to jane.doe@example.com today."))
    assert out.counts == {"EMAIL_ADDRESS": 1}
