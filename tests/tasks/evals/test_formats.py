"""The benchmark readers on the published layouts (the sample's evaluation files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lmforge.infra.settings import DEFAULT_CONFIG
from lmforge.tasks.evals.formats import read_items

EVAL = DEFAULT_CONFIG.parent / "eval"


def test_multiple_choice_formats() -> None:
    hs = read_items("hellaswag", EVAL / "hellaswag.jsonl")
    assert len(hs) == 6 and hs[0].gold == 0 and len(hs[0].choices) == 4
    assert hs[0].query.startswith("Boating: A ferry leaves") and "The captain" in hs[0].query
    piqa = read_items("piqa", EVAL / "piqa" / "valid.jsonl")  # labels from valid-labels.lst
    assert [p.gold for p in piqa] == [0, 1, 0, 1, 0, 1]
    boolq = read_items("boolq", EVAL / "boolq.jsonl")
    assert boolq[1].choices == ("no", "yes") and boolq[1].gold == 0 and boolq[0].gold == 1
    mmlu = read_items("mmlu", EVAL / "mmlu" / "geography_test.csv")
    assert mmlu[0].choices == ("A", "B", "C", "D") and mmlu[0].gold == 1
    assert mmlu[0].description.endswith("about geography.")
    assert "\nB. A delta or estuary\n" in mmlu[0].query and mmlu[0].query.endswith("Answer:")
    arc = read_items("arc", EVAL / "arc.jsonl")
    assert arc[3].gold == 3 and arc[3].choices[3] == "it displaces enough water"


def test_arc_flat_layout_and_piqa_inline_label(tmp_path: Path) -> None:
    flat = tmp_path / "arc.jsonl"
    flat.write_text(json.dumps({"id": "x", "question": "2+2?", "answerKey": "2",
                                "choices": {"text": ["3", "4"], "label": ["1", "2"]}}) + "\n")
    assert read_items("arc", flat)[0].gold == 1
    piqa = tmp_path / "dev.jsonl"
    piqa.write_text(json.dumps({"goal": "g", "sol1": "a", "sol2": "b", "label": 1}) + "\n")
    assert read_items("piqa", piqa)[0].gold == 1


def test_generation_formats() -> None:
    nq = read_items("qa", EVAL / "nq_open.jsonl")
    assert nq[0].references == ("Pacific Ocean", "the Pacific")
    assert nq[0].prompt == "Question: what is the largest ocean on earth\nAnswer:"
    squad = read_items("squad", EVAL / "squad.json")
    assert len(squad) == 4 and squad[1].references == ("1845",)
    assert "Westmark is a river town" in squad[1].prompt
    gen = read_items("generate", EVAL / "summaries.jsonl")
    assert gen[0].references[0].startswith("The ferry crosses")


def test_wrong_format_and_missing_file_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in 'hellaswag' format"):
        read_items("hellaswag", EVAL / "boolq.jsonl")
    with pytest.raises(FileNotFoundError, match=r"evaluate\.tasks"):
        read_items("arc", tmp_path / "missing.jsonl")
