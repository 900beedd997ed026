from __future__ import annotations

import io

from warcio.warcwriter import WARCWriter

from infra.make_sample import EPOCH, _warc_response
from tasks.readers.commoncrawl import decode_html
from tests.tasks.readers.helpers import read

WARC = "commoncrawl/CC-MAIN-20240301-00000.warc.gz"


def test_extracts_main_text_without_boilerplate(sample_dir) -> None:
    result = read("commoncrawl", sample_dir / WARC)
    page = next(d for d in result.docs if d.url and d.url.endswith("/towns/arvel"))
    assert "Arvel" in page.text
    assert "All rights reserved" not in page.text and "Home | News" not in page.text
    assert page.created is not None and page.meta["warc_record_id"].startswith("<urn:uuid:")
    assert not any(d.url and d.url.endswith(".png") for d in result.docs)


def test_charset_from_header_and_meta() -> None:
    payload = "Café".encode("cp1252")
    assert decode_html(payload, "text/html; charset=windows-1252") == ("Café", "windows-1252")
    assert decode_html(b"<meta charset='utf-8'>Caf\xc3\xa9", None)[0].endswith("Café")
    text, charset = decode_html(b"Caf\xe9", None)
    assert text == "Café" and charset == "cp1252"


def test_cp1252_page_is_decoded(sample_dir) -> None:
    result = read("commoncrawl", sample_dir / WARC)
    cafe = next(d for d in result.docs if d.url == "https://old.example.com/cafe")
    assert "café" in cafe.text


def test_broken_record_is_quarantined_and_earlier_records_kept(sample_dir) -> None:
    result = read("commoncrawl", sample_dir / "commoncrawl/CC-MAIN-20240301-00001.warc.gz")
    assert [d.url for d in result.docs] == ["https://westmark-news.example.com/weather"]
    assert [q["reason"] for q in result.quarantined] == ["commoncrawl/broken_record"]


def test_wet_conversion_records(tmp_path) -> None:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    record = writer.create_warc_record(
        "https://example.com/a", "conversion", payload=io.BytesIO(b"Plain extracted text."),
        warc_headers_dict={"WARC-Identified-Content-Language": "eng,fra",
                           "Content-Type": "text/plain"})
    writer.write_record(record)
    (tmp_path / "x.warc.wet.gz").write_bytes(buf.getvalue())
    doc = read("commoncrawl", tmp_path / "x.warc.wet.gz").docs[0]
    assert (doc.text, doc.url, doc.language) == ("Plain extracted text.",
                                                 "https://example.com/a", "eng")


def test_page_without_main_text_is_skipped(tmp_path) -> None:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    _warc_response(writer, "https://e.com/", b"<html><body><div></div></body></html>",
                   "text/html", EPOCH)
    (tmp_path / "a.warc.gz").write_bytes(buf.getvalue())
    result = read("commoncrawl", tmp_path / "a.warc.gz")
    assert result.docs == [] and [r for _, r in result.skipped] == ["commoncrawl/no_main_text"]
