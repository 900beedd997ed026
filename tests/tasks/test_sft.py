"""Instruction data: the three readers, quarantine, the chat template's loss mask, packing and
decontamination, on the sample instruction set (the sample generator writes it)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from lmforge.model.objectives import IGNORE
from lmforge.tasks.decontaminate import DecontaminationConfig
from lmforge.tasks.sft import (
    BadRecord,
    ChatTemplate,
    Message,
    SFTCounts,
    SFTDataConfig,
    _json_array,
    causal_example,
    pack,
    prepare_sft,
    read_chats,
    to_messages,
)


def test_each_format_reads_to_the_same_chat() -> None:
    alpaca = to_messages({"instruction": "Repeat these words", "input": "ferry mill",
                          "output": "ferry mill"})
    sharegpt = to_messages({"conversations": [
        {"from": "human", "value": "Repeat these words\n\nferry mill"},
        {"from": "gpt", "value": "ferry mill"}]})
    openai = to_messages({"messages": [
        {"role": "user", "content": "Repeat these words\n\nferry mill"},
        {"role": "assistant", "content": "ferry mill"}]})
    assert alpaca == sharegpt == openai == [Message("user", "Repeat these words\n\nferry mill"),
                                            Message("assistant", "ferry mill")]
    for bad, reason in [({"messages": [{"role": "user", "content": "hi"}]}, "turn_order"),
                        ({"messages": [{"role": "user", "content": "hi"},
                                       {"role": "robot", "content": "x"}]}, "unknown_role"),
                        ({"conversations": []}, "no_turns"), ({"text": "x"}, "unknown_format"),
                        (["x"], "not_an_object")]:
        with pytest.raises(BadRecord, match=reason):
            to_messages(bad)


def test_sample_files_are_read_and_bad_records_quarantined(sample_dir) -> None:
    counts, quarantine = SFTCounts(), []
    chats = [c for f in sorted((sample_dir / "instruct").iterdir())
             for c in read_chats(f, counts, quarantine)]
    assert counts.records == 483 and len(chats) == 480
    assert counts.quarantined == {"empty_turn": 1, "invalid_json": 1, "turn_order": 1}
    assert {(q["file"].rsplit("/", 1)[-1], q["reason"].split(":")[0]) for q in quarantine} == {
        ("sharegpt.jsonl", "empty_turn"), ("openai.jsonl", "invalid_json"),
        ("openai.jsonl", "turn_order")}
    assert any(len(c) > 2 for c in chats) and any(c[0].role == "system" for c in chats)


def test_json_arrays_are_streamed_item_by_item(sample_dir) -> None:
    text = (sample_dir / "instruct" / "alpaca.json").read_text()
    f = io.StringIO(text)
    f.read(1)  # the reader has consumed the "["
    items = [v for _, v in _json_array(f, chunk=64)]  # far smaller than one record
    assert items == json.loads(text)


def test_template_scores_the_reply_and_its_end_only(chat_tokenizer) -> None:
    template = ChatTemplate(str(chat_tokenizer))
    chat = [Message("system", "Be brief."), Message("user", "What is one plus one?"),
            Message("assistant", "one plus one is two."), Message("user", "And two plus two?"),
            Message("assistant", "two plus two is four.")]
    ids, scored, prompt = template.encode(chat)
    assert len(ids) == len(scored)
    decoded = template.tok.decode([i for i, s in zip(ids, scored, strict=True) if s],
                                  skip_special_tokens=False)
    assert decoded == "\none plus one is two.<|endoftext|>\ntwo plus two is four.<|endoftext|>"
    assert ids[prompt - 1] == template.role["assistant"] and not any(scored[:prompt])
    assert template.prompt(chat[:2]) == ids[:prompt]  # generation starts where training did


def test_prompt_tokens_carry_no_loss(chat_tokenizer) -> None:
    """The loss depends on the predictions of reply tokens only: its gradient at every position
    that predicts a prompt token is exactly zero."""
    import torch
    from lmforge.model.objectives import lm_loss

    template = ChatTemplate(str(chat_tokenizer))
    ids, scored, prompt = template.encode([Message("user", "Repeat these words: ferry mill"),
                                           Message("assistant", "ferry mill")])
    inputs, targets, _ = causal_example(ids, scored, prompt, 64)
    logits = torch.randn(1, len(inputs), 600, requires_grad=True)
    lm_loss(logits, torch.from_numpy(targets)[None].long()).backward()
    per_position = logits.grad.abs().sum(-1)[0]
    predicts_prompt = ~torch.tensor(scored[1:len(inputs) + 1])
    assert (per_position[predicts_prompt] == 0).all() and (per_position[~predicts_prompt] > 0).all()
    # another label on a prompt token (inputs unchanged): the same loss
    relabelled = list(ids)
    relabelled[1] = (relabelled[1] + 7) % 600
    other = causal_example(relabelled, scored, prompt, 64)[1]
    same = [lm_loss(logits, torch.from_numpy(t)[None].long()) for t in (targets, other)]
    assert float(same[0].detach()) == float(same[1].detach())


def test_packing_keeps_every_example_once_with_its_own_segment() -> None:
    rng = np.random.default_rng(0)
    examples = []
    for n in rng.integers(3, 30, 40):
        tokens = rng.integers(10, 99, n)
        examples.append((tokens, np.where(rng.random(n) < 0.5, tokens, IGNORE),
                         np.arange(n) < 2))
    rows = pack(examples, 64, pad=1, packed=True)
    assert rows.shape[1:] == (4, 64) and len(rows) < len(examples) / 2
    found = []
    for row in rows:
        for seg in sorted(set(row[2]) - {-1}):
            where = np.flatnonzero(row[2] == seg)
            assert (np.diff(where) == 1).all()  # contiguous
            found.append(tuple(row[0, where]))
        pad = row[2] == -1
        assert (row[1, pad] == IGNORE).all() and (row[0, pad] == 1).all()
    assert sorted(found) == sorted(tuple(e[0]) for e in examples)
    assert len(pack(examples, 64, pad=1, packed=False)) == len(examples)


def test_prepare_accounts_for_every_record_and_decontaminates(sample_dir, chat_tokenizer,
                                                              tmp_path) -> None:
    files = sorted((sample_dir / "instruct").iterdir())
    clean = prepare_sft(files, str(chat_tokenizer), SFTDataConfig(paths=("x",), seq_len=96),
                        tmp_path / "clean")
    assert clean["records"] == 483 and clean["examples"] == 480
    assert sum(clean["quarantined"].values()) == 3
    assert len((tmp_path / "clean" / "quarantine.jsonl").read_text().splitlines()) == 3
    rows = np.load(tmp_path / "clean" / "train.npy")
    assert rows.shape[1:] == (4, 96) and clean["splits"]["train"]["rows"] == len(rows)
    assert 0 < clean["splits"]["val"]["examples"] < 0.2 * clean["examples"]
    # an evaluation set holding one training reply's words: that chat leaves training
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"q": "Which river runs through Aldbury? The Senna runs "
                                      "through Aldbury and then on to the sea as it always"}))
    cfg = SFTDataConfig(paths=("x",), seq_len=96,
                        decontaminate=DecontaminationConfig(paths=(str(evals),), ngram=6))
    dirty = prepare_sft(files, str(chat_tokenizer), cfg, tmp_path / "dirty")
    assert dirty["decontaminated"] > 0
    assert dirty["examples"] + dirty["decontaminated"] == clean["examples"]


def test_preparation_streams_in_windows_and_keeps_every_example(sample_dir, chat_tokenizer,
                                                               tmp_path) -> None:
    """Packing ``window`` examples at a time (bounded memory) keeps the same examples as
    packing them all at once; an empty split is a valid zero-row file."""
    files = sorted((sample_dir / "instruct").iterdir())
    cfg = SFTDataConfig(paths=("x",), seq_len=96, val_fraction=0.0)
    whole = prepare_sft(files, str(chat_tokenizer), cfg, tmp_path / "whole")
    small = prepare_sft(files, str(chat_tokenizer), cfg, tmp_path / "small", window=16)

    def examples(folder):
        rows = np.load(folder / "train.npy")
        return sorted(tuple(row[0, row[2] == seg]) for row in rows
                      for seg in set(row[2].tolist()) - {-1})

    assert examples(tmp_path / "whole") == examples(tmp_path / "small")
    assert small["splits"]["train"]["rows"] >= whole["splits"]["train"]["rows"]
    assert np.load(tmp_path / "small" / "val.npy").shape == (0, 4, 96)
    assert not list((tmp_path / "small").glob("*.raw"))
