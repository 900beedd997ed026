from __future__ import annotations

from datetime import UTC, datetime

from lmforge.tasks.schema import Document, doc_id, documents_to_table, table_to_documents


def test_doc_id_is_stable_and_distinct() -> None:
    assert doc_id("reddit", "RC_2024.zst#t1_a") == doc_id("reddit", "RC_2024.zst#t1_a")
    assert doc_id("reddit", "RC_2024.zst#t1_a") != doc_id("reddit", "RC_2024.zst#t1_b")
    assert doc_id("books", "x#1") != doc_id("code", "x#1")
    assert len(doc_id("a", "b")) == 32


def test_table_round_trip_keeps_every_field() -> None:
    doc = Document.new("wikipedia", "dump.xml.bz2#12", "Text with ünïcode", title="T",
                       url="https://x", created=datetime(2024, 1, 2, tzinfo=UTC), language="en",
                       scores={"toxicity": 0.25}, meta={"page_id": "12", "nested": {"a": [1]}})
    back = table_to_documents(documents_to_table([doc]))
    assert back == [doc]
