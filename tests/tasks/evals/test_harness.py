"""Tasks scored on a model trained on planted patterns: it must get them right, an untrained
model must not, and batch size must not change a score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lmforge.tasks.evals.config import TaskConfig
from lmforge.tasks.evals.formats import read_items
from lmforge.tasks.evals.harness import LM, choice_prompt, run_task

from tests.tasks.evals.conftest import ANTONYMS, PASSAGE, QA


def _antonym_task(tmp_path: Path) -> Path:
    words = list(ANTONYMS.values())
    rows = []
    for i, (a, b) in enumerate(ANTONYMS.items()):
        others = [w for w in words if w != b][i % 5:i % 5 + 3]
        choices = [*others[:i % 4], b, *others[i % 4:]]
        rows.append({"id": f"q{i}", "query": f"The opposite of {a} is", "choices": choices,
                     "gold": choices.index(b)})
    path = tmp_path / "antonyms.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_planted_multiple_choice_pattern_is_scored_correctly(trained_lm: LM, untrained_lm: LM,
                                                            tmp_path: Path) -> None:
    cfg = TaskConfig(name="antonyms", format="mc", path=_antonym_task(tmp_path))
    trained = run_task(trained_lm, cfg)
    assert trained.metrics["acc"] == 1.0 and trained.metrics["items"] == 8
    assert all(row["correct"] for row in trained.predictions)
    assert run_task(untrained_lm, cfg).metrics["acc"] < 0.75


def test_scores_do_not_depend_on_batch_size(trained_lm: LM, tmp_path: Path) -> None:
    cfg = TaskConfig(name="antonyms", format="mc", path=_antonym_task(tmp_path), shots=2)
    base = run_task(trained_lm, cfg)
    for size in (1, 3):
        other = run_task(LM(trained_lm.model, trained_lm.tokenizer, trained_lm.special, size), cfg)
        assert other.metrics == base.metrics
        for a, b in zip(other.predictions, base.predictions, strict=True):
            assert a["pred"] == b["pred"] and a["logprobs"] == pytest.approx(b["logprobs"],
                                                                             abs=2e-3)


def test_few_shot_prompts_are_seeded_and_exclude_the_item(tmp_path: Path) -> None:
    path = _antonym_task(tmp_path)
    items = read_items("mc", path)
    cfg = TaskConfig(name="a", format="mc", path=path, shots=3, seed=7)
    from lmforge.tasks.evals.harness import FewShot

    one = FewShot(items, 3, cfg.seed, True).draw(items[0].id)
    assert one == FewShot(list(reversed(items)), 3, cfg.seed, True).draw(items[0].id)
    assert items[0] not in one and len(one) == 3
    prompt = choice_prompt(items[0], one)
    assert prompt.count("The opposite of") == 4 and prompt.endswith(items[0].query)
    assert any(FewShot(items, 3, seed, True).draw(items[0].id) != one for seed in range(8, 12))
    # every item of a larger pool: never itself, always k distinct examples
    for item in items:
        drawn = FewShot(items, 7, 1, True).draw(item.id)
        assert len({d.id for d in drawn}) == 7 and item.id not in {d.id for d in drawn}
    with pytest.raises(ValueError, match="few-shot pool"):
        FewShot(items[:2], 3, 0, True).draw(items[0].id)


def test_open_qa_generation_exact_match(trained_lm: LM, untrained_lm: LM,
                                        tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n"
                            for q, a in QA.items()))
    cfg = TaskConfig(name="qa", format="qa", path=path, max_new_tokens=8)
    result = run_task(trained_lm, cfg)
    assert result.metrics["exact_match"] == 1.0 and result.metrics["f1"] == 1.0
    assert {r["answer"] for r in result.predictions} == set(QA.values())
    assert run_task(untrained_lm, cfg).metrics["exact_match"] == 0.0


def test_generation_task_reports_bleu_and_rouge(trained_lm: LM, tmp_path: Path) -> None:
    words = PASSAGE.split()
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps({"prompt": " ".join(words[:6]),
                                "reference": " ".join(words[6:18])}) + "\n")
    result = run_task(trained_lm, TaskConfig(name="g", format="generate", path=path,
                                             max_new_tokens=40))
    # the passage continues past the reference: full recall, precision below 1
    assert result.predictions[0]["generation"].strip().startswith(" ".join(words[6:18]))
    assert 0.5 < result.metrics["rouge1"] < 1.0 and result.metrics["bleu"] > 30


def test_chain_of_thought_appends_the_trigger(tmp_path: Path) -> None:
    from lmforge.tasks.evals.formats import Generation
    from lmforge.tasks.evals.harness import COT_TRIGGER, generation_prompt

    item = Generation("1", "Question: q\nAnswer:", ("a",), "Question: q\nAnswer: a")
    assert generation_prompt(item, [], cot=True).endswith("Answer:" + COT_TRIGGER)
    assert generation_prompt(item, [item], cot=False).startswith("Question: q\nAnswer: a\n\n")
    with pytest.raises(ValueError, match="chain_of_thought"):
        TaskConfig(name="x", format="mc", path=tmp_path, chain_of_thought=True)


def test_self_consistency_votes_over_seeded_samples(trained_lm: LM, tmp_path: Path) -> None:
    """Sampled answers (seeded per item and sample, so batch size changes nothing), then the
    most frequent normalised answer; the vote is at least as good as a single sample."""
    from dataclasses import replace

    from lmforge.tasks.evals.metrics import exact_match

    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n"
                            for q, a in QA.items()))
    cfg = TaskConfig(name="qa", format="qa", path=path, max_new_tokens=8, self_consistency=7,
                     temperature=1.3)
    result = run_task(trained_lm, cfg)
    sampled = [r["sampled_answers"] for r in result.predictions]
    assert all(len(s) == 7 for s in sampled)
    assert any(len(set(s)) > 1 for s in sampled)  # really sampled, not greedy
    single = sum(exact_match(a, r["references"]) for r in result.predictions
                 for a in r["sampled_answers"]) / (7 * len(sampled))
    # here: single samples 0.71 correct, the vote 1.0
    assert result.metrics["exact_match"] >= max(single, 0.75)
    one_at_a_time = run_task(replace(trained_lm, batch_size=1), cfg)
    assert [r["sampled_answers"] for r in one_at_a_time.predictions] == sampled
    with pytest.raises(ValueError, match="self_consistency"):
        TaskConfig(name="x", format="hellaswag", path=path, self_consistency=3)
