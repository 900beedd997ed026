from __future__ import annotations

import io

from lmforge.infra.make_sample import EPOCH, FACTS, Prose, _warc_response, html_page
from lmforge.tasks.readers.commoncrawl import decode_html
from lmforge.tasks.readers.extract import html_pieces, parse_html, unwrap_html_text
from lxml import etree
from warcio.warcwriter import WARCWriter

from tests.tasks.readers.helpers import read

WARC = "commoncrawl/CC-MAIN-20240301-00000.warc.gz"


def test_extracts_main_text_without_boilerplate(sample_dir) -> None:
    result = read("commoncrawl", sample_dir / WARC)
    page = next(d for d in result.docs if d.url and d.url.endswith("/towns/arvel"))
    assert "Arvel" in page.text
    assert "All rights reserved" not in page.text and "Home | News" not in page.text
    assert page.created is not None and page.meta["warc_record_id"].startswith("<urn:uuid:")
    assert not any(d.url and d.url.endswith(".png") for d in result.docs)


def test_hard_wrapped_source_lines_read_as_a_browser_shows_them() -> None:
    root = parse_html("<html><body><p>one\n  two <b>three\nfour</b>\nfive</p>"
                      "<pre>a\n  b<i>c\n d</i></pre>\nafter\npre<div>x <code>c\nd</code>"
                      "\ntail</div><!-- note\nkept --><textarea>t\nu</textarea></body></html>")
    unwrap_html_text(root)
    p, pre, div, comment, area = root.find("body")
    assert (p.text, p[0].text, p[0].tail) == ("one two ", "three four", " five")
    assert (pre.text, pre[0].text, pre[0].tail) == ("a\n  b", "c\n d", None)
    assert pre.tail == "\nafter\npre"  # the tail after a preformatted element is left alone
    assert (div[0].text, div[0].tail) == ("c\nd", "\ntail")
    assert comment.text == " note\nkept " and area.text == "t\nu"
    assert all(type(e).__name__ == "HtmlElement" for e in root.iter(etree.Element))


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


def _warc(pages: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for url, payload in pages:
        _warc_response(writer, url, payload, "text/html", EPOCH)
    return buf.getvalue()


def _pages(n: int, seed: int = 21) -> list[tuple[str, bytes]]:
    prose = Prose(seed)
    return [(f"https://e.com/{i}", html_page(f"P{i}", [prose.paragraph(FACTS, 4)]))
            for i in range(n)]


def test_corrupt_record_in_the_middle_keeps_records_after_it(tmp_path) -> None:
    other = [(url.replace("e.com/", "e.com/b"), page) for url, page in _pages(3, seed=22)]
    good_a, good_b = _warc(_pages(3)), _warc(other)  # record ids come from the URLs
    garbage = b"\x1f\x8b\x08\x00" + b"\x13\x37" * 300  # a gzip header, then noise
    (tmp_path / "x.warc.gz").write_bytes(good_a + garbage + good_b)
    result = read("commoncrawl", tmp_path / "x.warc.gz")
    assert len(result.docs) == 6
    assert [q["reason"] for q in result.quarantined] == ["commoncrawl/broken_record"]
    assert result.quarantined[0]["offset"] == len(good_a)


def test_truncated_gzip_keeps_complete_records(tmp_path) -> None:
    data = _warc(_pages(5))
    (tmp_path / "cut.warc.gz").write_bytes(data[: len(data) - 300])
    result = read("commoncrawl", tmp_path / "cut.warc.gz")
    assert len(result.docs) == 4
    assert [q["reason"] for q in result.quarantined] == ["commoncrawl/truncated_record"]


def test_empty_and_non_warc_files(tmp_path) -> None:
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    (tmp_path / "junk.warc.gz").write_bytes(bytes(range(256)) * 20)
    assert [q["reason"] for q in read("commoncrawl", tmp_path / "empty.warc.gz").quarantined] \
        == ["commoncrawl/empty_file"]
    assert [q["reason"] for q in read("commoncrawl", tmp_path / "junk.warc.gz").quarantined] \
        == ["commoncrawl/not_a_warc"]


def test_pathological_page_times_out_and_the_worker_moves_on(tmp_path) -> None:
    # under the 1 M-character piece size, so extracted in one call (about 1 s here, 3x the
    # limit; a small page takes milliseconds, so neither side depends on the machine's load)
    rows = "".join(f"<tr><td>{i} cell text here</td><td>more</td></tr>" for i in range(18_000))
    slow = f"<html><body><table>{rows}</table></body></html>".encode()
    assert len(slow) < 1_000_000
    pages = [("https://e.com/slow", slow), *_pages(2)]
    (tmp_path / "slow.warc.gz").write_bytes(_warc(pages))
    result = read("commoncrawl", tmp_path / "slow.warc.gz", extract_timeout_s=0.3,
                  include_tables=True)
    assert [d.url for d in result.docs] == ["https://e.com/0", "https://e.com/1"]
    assert [q["reason"] for q in result.quarantined] == ["commoncrawl/extract_timeout"]


def test_url_allowlist_keeps_listed_pages_only(tmp_path) -> None:
    (tmp_path / "a.warc.gz").write_bytes(_warc(_pages(4)))
    (tmp_path / "urls.txt").write_text("HTTPS://E.COM/1/\nhttps://e.com/3#frag\n")
    result = read("commoncrawl", tmp_path / "a.warc.gz", url_allowlist=str(tmp_path / "urls.txt"))
    assert [d.url for d in result.docs] == ["https://e.com/1", "https://e.com/3"]
    assert [r for _, r in result.skipped] == ["commoncrawl/url_not_in_allowlist"] * 2


def test_remote_style_fsspec_path() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/crawl/a.warc.gz", _warc(_pages(2)))
    result = read("commoncrawl", "memory://crawl/*.warc.gz")
    assert len(result.docs) == 2
    assert result.docs[0].location.startswith("a.warc.gz#")


def test_very_long_page_is_extracted_in_pieces(tmp_path) -> None:
    paragraphs = [f"Paragraph {i} tells how the ferry crossed the river at dawn, as every "
                  "day, and how the passengers watched the gulls over the water." for i in
                  range(30_000)]
    script = "<script>" + "var x = 1;" * 100_000 + "</script>"
    page = ("<html><head><title>Long</title>" + script + "</head><body><article>"
            + "".join(f"<p>{p}</p>" for p in paragraphs) + "</article>" + script
            + "</body></html>")
    assert len(page) > 5_000_000
    pieces = html_pieces(page, 1_000_000)
    assert len(pieces) >= 4 and all(len(p) < 1_100_000 for p in pieces)
    assert all("<title>Long</title>" in p and "var x" not in p for p in pieces)
    (tmp_path / "long.warc.gz").write_bytes(_warc([("https://e.com/long", page.encode())]))
    doc, = read("commoncrawl", tmp_path / "long.warc.gz").docs
    assert doc.text.count("Paragraph ") == len(paragraphs)


def test_a_repeated_record_id_is_one_document(tmp_path) -> None:
    # real WARCs repeat records (pywb's example-extra.warc): the copy is skipped, so
    # document ids stay unique
    data = _warc(_pages(2))
    (tmp_path / "twice.warc.gz").write_bytes(data + data)
    result = read("commoncrawl", tmp_path / "twice.warc.gz")
    assert len(result.docs) == 2 and len({d.id for d in result.docs}) == 2
    assert [r for _, r in result.skipped] == ["commoncrawl/duplicate_record_id"] * 2
