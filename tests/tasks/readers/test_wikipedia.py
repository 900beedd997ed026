from __future__ import annotations

import bz2
import re
from datetime import UTC, datetime

import pytest
from lmforge.infra.make_sample import WIKI_HEADER, wiki_page
from lmforge.tasks.readers.wikipedia import wikitext_to_text

from tests.tasks.readers.helpers import read

WIKI = "wikipedia/enwiki-20240301-pages-articles1.xml.bz2"


def test_reads_articles_with_metadata(sample_dir) -> None:
    result = read("wikipedia", sample_dir / WIKI)
    docs = result.by_title()
    arvel = docs["Arvel"]
    assert arvel.meta["page_id"] == "100"
    assert arvel.created == datetime(2023, 11, 22, tzinfo=UTC)  # EPOCH - page id days
    assert arvel.url == "https://en.wikipedia.org/wiki/Arvel"
    assert arvel.id == read("wikipedia", sample_dir / WIKI).by_title()["Arvel"].id  # stable


def test_drops_redirects_disambiguation_and_other_namespaces(sample_dir) -> None:
    result = read("wikipedia", sample_dir / WIKI)
    titles = set(result.by_title())
    assert "Arvel Town" not in titles and "Mill (disambiguation)" not in titles
    assert "Talk:Arvel" not in titles
    assert sorted(r for _, r in result.skipped) == ["wikipedia/disambiguation",
                                                   "wikipedia/redirect"]
    report = result.report.sources["wikipedia"]
    assert report.docs_in == report.docs_out + report.docs_dropped


def test_wikitext_becomes_readable_plain_text() -> None:
    text = wikitext_to_text(
        "{{Infobox x|a=1}}'''Foo''' is a [[bar|baz]] town.<ref>cite</ref>\n"
        "== History ==\nOld text.\n* item [[one]]\n"
        "{| class=\"wikitable\"\n|-\n| cell || 99\n|}\n"
        "[[File:X.jpg|thumb|caption]]\n[[Category:Towns]]\n[[de:Foo]]\n<!-- hidden -->")
    assert text.startswith("Foo is a baz town.")
    assert "\nHistory\n" in text and "- item one" in text
    for gone in ("cite", "Infobox", "cell", "caption", "Category", "Towns", "de:", "hidden",
                 "[[", "{{", "'''"):
        assert gone not in text


def test_truncated_dump_keeps_pages_before_the_cut(sample_dir) -> None:
    result = read("wikipedia",
                  sample_dir / "wikipedia/enwiki-20240301-pages-articles-multistream2.xml.bz2")
    assert [d.title for d in result.docs] == ["Arvel", "Brenmoor", "Calder Reach", "Dunholt"]
    assert [q["reason"] for q in result.quarantined] == ["wikipedia/truncated_stream"]


def test_malformed_page_is_quarantined_and_parsing_resumes(tmp_path) -> None:
    bad = "  <page>\n    <title>Broken & bad</title>\n    <ns>0</ns>\n  </page>\n"
    xml = WIKI_HEADER + wiki_page(1, "Good one", "Some good text here.") + bad + \
        wiki_page(3, "Good two", "More good text.") + "</mediawiki>\n"
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(xml.encode()))
    result = read("wikipedia", path)
    assert sorted(result.by_title()) == ["Good one", "Good two"]
    assert [q["reason"] for q in result.quarantined] == ["wikipedia/malformed_xml"]
    assert result.quarantined[0]["record"] == "title Broken & bad"  # which page broke


def test_unreadable_file_is_quarantined(tmp_path) -> None:
    path = tmp_path / "empty.xml.bz2"
    path.write_bytes(b"not bzip2 at all")
    result = read("wikipedia", path)
    assert result.docs == []
    assert len(result.quarantined) == 1


def _dump(pages: int = 6) -> str:
    body = "".join(wiki_page(10 + i, f"Page {i}", f"'''Page {i}''' is about {i} things. "
                             + "Some longer text to fill the page. " * 20)
                   for i in range(pages))
    return WIKI_HEADER + body + "</mediawiki>\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "iso-8859-1"])
def test_any_declared_encoding_is_read(tmp_path, encoding: str) -> None:
    declared = {"utf-8-sig": "utf-8", "iso-8859-1": "ISO-8859-1"}.get(encoding, "UTF-16")
    xml = f'<?xml version="1.0" encoding="{declared}"?>\n' + _dump().replace(
        "Page 0</title>", "Pagé 0</title>")
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(xml.encode(encoding)))
    result = read("wikipedia", path)
    assert sorted(result.by_title()) == ["Page 1", "Page 2", "Page 3", "Page 4", "Page 5",
                                         "Pagé 0"]
    assert result.quarantined == []


def test_elements_need_not_be_on_lines_of_their_own(tmp_path) -> None:
    one_line = re.sub(r">\s+<", "><", _dump())
    assert "\n" not in one_line.strip()
    path = tmp_path / "dump.xml"
    path.write_text(one_line)
    assert len(read("wikipedia", path).docs) == 6


def test_plain_byte_ranges_read_every_page_once(tmp_path) -> None:
    path = tmp_path / "dump.xml"
    path.write_text(re.sub(r">\s+<", "><", _dump(40)))  # ~40 pages on one line
    whole = read("wikipedia", path)
    split = read("wikipedia", path, split_bytes=4096)
    assert split.partitions > 3
    assert sorted(d.id for d in split.docs) == sorted(d.id for d in whole.docs)
    assert len(whole.docs) == 40


def test_multistream_ranges_and_offsets(tmp_path) -> None:
    pages = [wiki_page(10 + i, f"Page {i}", "Some text of this page. " * 40) for i in range(9)]
    streams = [bz2.compress(WIKI_HEADER.encode())]
    streams += [bz2.compress("".join(pages[i:i + 3]).encode()) for i in range(0, 9, 3)]
    streams.append(bz2.compress(b"</mediawiki>\n"))
    path = tmp_path / "multistream.xml.bz2"
    path.write_bytes(b"".join(streams))
    split = read("wikipedia", path, split_bytes=1024)
    assert split.partitions >= 2
    assert sorted(split.by_title()) == sorted(f"Page {i}" for i in range(9))


def test_undecodable_bytes_quarantine_the_page_not_the_dump(tmp_path) -> None:
    xml = _dump(3).encode().replace(b"Page 1</title>", b"Page \xff1</title>")
    path = tmp_path / "dump.xml"
    path.write_bytes(xml)
    result = read("wikipedia", path)
    assert sorted(result.by_title()) == ["Page 0", "Page 2"]
    assert [q["reason"] for q in result.quarantined] == ["wikipedia/undecodable_bytes"]


def test_unterminated_page_is_reported_and_the_next_one_read(tmp_path) -> None:
    broken = _dump(3).replace("</page>", "", 1)
    path = tmp_path / "dump.xml"
    path.write_text(broken)
    result = read("wikipedia", path)
    assert sorted(result.by_title()) == ["Page 1", "Page 2"]
    assert [q["reason"] for q in result.quarantined] == ["wikipedia/unterminated_page"]
    assert result.quarantined[0]["record"] == "title Page 0"


def test_site_base_and_local_namespaces(tmp_path) -> None:
    header = WIKI_HEADER.replace("<sitename>Wikipedia</sitename>", "<sitename>Уикипедия"
                                 "</sitename>\n    <base>https://bg.wikipedia.org/wiki/Main</base>")
    header = header.replace("</namespaces>", '<namespace key="14">Категория</namespace>'
                            "</namespaces>")
    xml = header + wiki_page(1, "Град", "Текст за града. [[Категория:Градове]]") + \
        "</mediawiki>"
    path = tmp_path / "bg.xml"
    path.write_text(xml)
    doc = read("wikipedia", path).docs[0]
    assert doc.url == "https://bg.wikipedia.org/wiki/%D0%93%D1%80%D0%B0%D0%B4"
    assert doc.text == "Текст за града."
