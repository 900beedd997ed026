from __future__ import annotations

import bz2
from datetime import UTC, datetime

from infra.make_sample import WIKI_HEADER, wiki_page
from tasks.readers.wikipedia import wikitext_to_text
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
