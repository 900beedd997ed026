"""Answer metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
from lmforge.tasks.evals.metrics import (
    bleu,
    choose,
    exact_match,
    extract_answer,
    normalize_answer,
    rouge,
    token_f1,
)


def test_squad_normalisation_exact_match_and_f1() -> None:
    assert normalize_answer("The  Pacific Ocean!") == "pacific ocean"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("the Pacific ocean.", ["Pacific Ocean", "Atlantic"]) == 1.0
    assert exact_match("Pacific", ["Pacific Ocean"]) == 0.0
    # pred {pacific}, ref {pacific, ocean}: P=1, R=1/2 -> F1 = 2/3
    assert token_f1("the Pacific", ["Pacific Ocean"]) == pytest.approx(2 / 3)
    # best over references
    assert token_f1("across the river", ["the captain", "across river"]) == 1.0
    assert token_f1("", ["x"]) == 0.0 and token_f1("the", ["a"]) == 1.0  # both empty


def test_bleu_matches_the_formula() -> None:
    hyp, ref = "the cat sat on the mat", "the cat is on the mat"
    # matches 5/6, 3/5, 1/4, 0/3 -> exp smoothing gives 1/(2*3); brevity penalty 1
    expected = 100 * math.exp(sum(map(math.log, [5 / 6, 3 / 5, 1 / 4, 1 / 6])) / 4)
    assert bleu([hyp], [[ref]]) == pytest.approx(expected, abs=0.01)
    assert bleu([ref], [[ref]]) == pytest.approx(100.0)
    # several references per item: the second one matches exactly
    assert bleu([ref], [["a dog ran", ref]]) == pytest.approx(100.0)


def test_rouge_matches_hand_counts() -> None:
    scores = rouge("the cat sat on the mat", ["the cat is on the mat"])
    assert scores["rouge1"] == pytest.approx(5 / 6)  # 5 shared unigrams of 6
    assert scores["rouge2"] == pytest.approx(3 / 5)  # 3 shared bigrams of 5
    assert scores["rougeL"] == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    assert rouge("cats running", ["cat runs"])["rouge1"] == pytest.approx(1.0)  # stemming


def test_acc_norm_divides_by_characters() -> None:
    raw, norm = choose([-10.0, -12.0], ["ab", "abcdefg"])
    assert (raw, norm) == (0, 1)  # -10/2 < -12/7
    assert choose([-3.0, -1.0], ["x", "y"]) == (1, 1)
    # as lm-evaluation-harness: characters, not UTF-8 bytes (-6/2 < -7/3; by bytes -6/4 > -7/3)
    assert choose([-6.0, -7.0], ["ññ", "abc"]) == (0, 1)


def test_chain_of_thought_answer_extraction() -> None:
    text = "Cows are mammals. Mammals drink water. So the answer is water. Done"
    assert extract_answer(text, chain_of_thought=True) == "water"
    assert extract_answer("first line\nsecond", chain_of_thought=False) == "first line"
    assert extract_answer("no marker\nlast line", chain_of_thought=True) == "last line"


def test_self_consistency_vote() -> None:
    from lmforge.tasks.evals.metrics import majority_answer

    assert majority_answer(["London", "Paris", "paris.", "The Paris", "London"]) == "Paris"
    assert majority_answer(["a b", "c", "A B!", "c"]) == "a b"  # tie: the form seen first
    assert majority_answer(["x"]) == "x"
