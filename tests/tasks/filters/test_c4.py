from __future__ import annotations

from lmforge.tasks.filters.c4 import (
    C4BadWordsFilter,
    C4CurlyBracketFilter,
    C4LineCleaner,
    C4LoremIpsumFilter,
    C4MinSentencesFilter,
    count_sentences,
)
from lmforge.tasks.schema import Document


def doc(text: str) -> Document:
    return Document.new("commoncrawl", "x#1", text)


def test_line_cleaner_removes_each_kind_of_line() -> None:
    text = "\n".join([
        "This line is a proper sentence.",
        "Menu Home About",  # no terminal punctuation
        "Too short.",  # two words
        "Please enable JavaScript to view this site.",
        "We use cookies to improve your experience.",
        "The mill was rebuilt in 1890.[1][citation needed]",
        "Another good line that ends well!",
    ])
    out = C4LineCleaner().rewrite(doc(text))
    assert out.text == ("This line is a proper sentence.\nThe mill was rebuilt in 1890.\n"
                        "Another good line that ends well!")
    assert dict(out.counts) == {"no_terminal_punctuation": 1, "too_few_words": 1,
                                "javascript": 1, "policy": 1}


def test_line_rules_can_be_switched_off() -> None:
    cleaner = C4LineCleaner(min_words_per_line=None, terminal_punctuation=False,
                            javascript=False, policy=False, citations=False)
    text = "Menu\nUses JavaScript and cookies"
    assert cleaner.rewrite(doc(text)).text == text


def test_ellipsis_is_not_terminal() -> None:
    out = C4LineCleaner().rewrite(doc("And then there was more..."))
    assert out.text == "" and out.counts == {"no_terminal_punctuation": 1}


def test_page_rules() -> None:
    assert C4LoremIpsumFilter().keep(doc("Lorem ipsum dolor sit amet.")).reason == "lorem_ipsum"
    assert C4CurlyBracketFilter().keep(doc("function f() { return 1; }")).reason == \
        "curly_bracket"
    five = "One. Two! Three? Four. Five."
    assert count_sentences(five) == 5
    assert C4MinSentencesFilter(min_sentences=5).keep(doc(five)).keep
    assert C4MinSentencesFilter(min_sentences=5).keep(doc("One. Two. Three. Four.")).reason \
        == "too_few_sentences"


def test_bad_words_list_from_the_package_and_from_a_file(tmp_path) -> None:
    packaged = C4BadWordsFilter()
    assert packaged.keep(doc("What the fuck happened?")).reason == "bad_words"
    assert packaged.keep(doc("Scunthorpe is a town in England.")).keep  # no substring hits
    words = tmp_path / "words.txt"
    words.write_text("turnip\nrotten eggs\n")
    custom = C4BadWordsFilter(bad_words=True, bad_words_list=str(words))
    assert custom.keep(doc("A Turnip!")).reason == "bad_words"
    assert custom.keep(doc("They threw rotten eggs.")).reason == "bad_words"
    assert custom.keep(doc("Turnips are fine.")).keep
