"""Wikitext → text on the constructs that real articles use (each case is taken from, or
shaped like, an article of the enwiki excerpt in the gensim wheel)."""

from __future__ import annotations

import pytest
from lmforge.tasks.readers.wikitext import wikitext_to_text


def test_plain_text_with_headings_and_lists() -> None:
    text = wikitext_to_text(
        "{{Infobox x|a=1}}'''Foo''' is a [[bar|baz]] town.<ref>cite</ref>\n"
        "== History ==\nOld text.\n* item [[one]]\n* {{cite book|title=Gone}}\n"
        "{| class=\"wikitable\"\n|-\n| cell || 99\n|}\n"
        "[[File:X.jpg|thumb|caption with [[a link]]]]\n[[Category:Towns]]\n[[de:Foo]]\n"
        "<!-- hidden -->")
    assert text == "Foo is a baz town.\n\nHistory\nOld text.\n- item one"


@pytest.mark.parametrize(("wikitext", "expected"), [
    # templates that carry prose are rendered, not left as holes
    ("about {{convert|10|km|mi}} in size", "about 10 km in size"),
    ("from {{convert|3|to|5|m}} deep", "from 3 to 5 m deep"),
    ("called {{lang|fr|la ville}} locally", "called la ville locally"),
    ("called {{lang-de|Stadt}} there", "called Stadt there"),
    ("a {{nowrap|long name}} here", "a long name here"),
    ("born {{birth date|1809|2|12}}", "born February 12, 1809"),
    ("born {{birth date|1809|2|12|df=y}}", "born 12 February 1809"),
    ("died {{death date and age|1865|4|15|1809|2|12}}", "died April 15, 1865 (aged 56)"),
    ("{{as of|2010}}, the town", "As of 2010, the town"),
    ("a {{frac|1|2}} share", "a 1/2 share"),
    ("a quote: {{quote|text=To be or not to be.}}", "a quote:\nTo be or not to be."),
    # removed templates leave no holes: "()", "(; ...)", dangling separators
    ("Albedo ({{IPAc-en|æ|l|ˈ|b|iː|d|oʊ}}) or reflection", "Albedo or reflection"),
    ("Lincoln ({{IPAc-en|ˈ|l|ɪ|ŋ|k|ən}}; February 12, 1809 – April 15, 1865) was",
     "Lincoln (February 12, 1809 – April 15, 1865) was"),
    ("Achilles ({{IPAc-en|ə|ˈ|k|ɪ|l|iː|z}}; {{lang-grc|Ἀχιλλεύς}}, ''Akhilleus'', "
     "{{IPA-el|a.kʰilˈleu̯s}}) was", "Achilles (Ἀχιλλεύς, Akhilleus) was"),
    ("run time: 52 minutes,{{cite web|url=x}}.", "run time: 52 minutes."),
    # formulas stay as their TeX source, untouched by the clean-up
    ("where <math>A = [[x]]</math> holds", "where A = [[x]] holds"),
])
def test_inline_constructs(wikitext: str, expected: str) -> None:
    assert wikitext_to_text(wikitext) == expected


def test_unbalanced_markup_is_removed_whole() -> None:
    # a <ref> whose italics never close (mwparserfromhell then reads the tag as text)
    ref = "Demanding.\"<ref>''Infinitely Demanding'' by Simon Critchley. p. 125</ref> Next."
    assert wikitext_to_text(ref) == "Demanding.\" Next."
    # a table whose attribute quotes are broken
    table = ("Before.\n\n{| class=\"wikitable sortable\" font-size:80%;\"\n|+ style=\"x\n"
             "! a !! b\n|-\n| 1 || 2\n|}\nAfter.")
    assert wikitext_to_text(table) == "Before.\n\nAfter."
    # a never-closed comment runs to the end
    assert wikitext_to_text("Kept. <!-- unterminated") == "Kept."


def test_sections_without_text_and_appendices_are_dropped() -> None:
    text = wikitext_to_text(
        "Lead.\n== Empty ==\n{{main|Other}}\n== Career ==\n=== Early ===\nWork.\n"
        "== See also ==\n* [[Other]]\n== References ==\n{{reflist}}\n"
        "== External links ==\n* [http://example.org Site]\n")
    assert text == "Lead.\n\nCareer\nEarly\nWork."
    kept = wikitext_to_text("Lead.\n== See also ==\n* [[Other]]\n", drop_sections=[])
    assert kept == "Lead.\n\nSee also\n- Other"


def test_localised_namespaces_of_the_dump() -> None:
    wikitext = "Текст.\n[[Файл:Map.png|мини|карта]]\n[[Категория:Календари]]"
    assert wikitext_to_text(wikitext, namespaces=["Файл", "Категория"]) == "Текст."
    assert "карта" in wikitext_to_text(wikitext)  # without the names it is only a link


def test_definition_lists_and_indented_lines() -> None:
    assert wikitext_to_text("; Term : its definition\n: an indented line") == \
        "Term its definition\nan indented line"


def test_nested_list_items_are_one_item_each() -> None:
    """Actinopterygii's taxonomy ("*** Order †Pycnodontiformes") once came out as "- - - Order",
    1,370 bare "-" words that sank the article below Gopher's alphabetic-word share."""
    text = wikitext_to_text("Orders:\n* Subclass A\n** Order B\n*** Order C\n#* Note D\n")
    assert text.splitlines()[1:] == ["- Subclass A", "- Order B", "- Order C", "- Note D"]
