"""Alignment on the sample preference sets: the readers account for every record; a reward
model's held-out pair accuracy rises above chance; DPO raises the held-out chosen-minus-
rejected log-ratio margin; both through the trainer, from a briefly fine-tuned base."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lmforge.model.checkpoint import load_model, save_model
from lmforge.model.config import ModelConfig
from lmforge.model.data import Rows
from lmforge.model.distributed import Runtime
from lmforge.model.finetune import parse_method
from lmforge.model.train_config import TrainConfig
from lmforge.model.transformer import build_model
from lmforge.tasks.alignment import align, pair_metrics
from lmforge.tasks.finetuning import finetune
from lmforge.tasks.preference import prepare_pairs, to_pair
from lmforge.tasks.sft import BadRecord, SFTDataConfig, prepare_sft

CPU = Runtime(0, 1, 0, torch.device("cpu"))


def cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(**{"steps": steps, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
                          "eval_every": steps, "log_every": 1, "eval_batches": 2,
                          "device": "cpu", "weight_decay": 0.0, **kw})


def test_hh_rlhf_and_triples_read_to_the_same_pair() -> None:
    hh = to_pair({"chosen": "\n\nHuman: What is one plus one?\n\nAssistant: Two.",
                  "rejected": "\n\nHuman: What is one plus one?\n\nAssistant: Go away."})
    triple = to_pair({"prompt": "What is one plus one?", "chosen": "Two.",
                      "rejected": [{"role": "assistant", "content": "Go away."}]})
    assert hh == triple and hh.chosen == "Two." and hh.prompt[0].content.endswith("one?")
    for bad, reason in [({"chosen": "x"}, "unknown_format"),
                        ({"prompt": "p", "chosen": "same", "rejected": "same"},
                         "identical_replies"),
                        ({"chosen": "\n\nHuman: a\n\nAssistant: b",
                          "rejected": "\n\nHuman: c\n\nAssistant: d"}, "not_a_pair")]:
        with pytest.raises(BadRecord, match=reason):
            to_pair(bad)


@pytest.fixture(scope="module")
def setup(sample_dir, chat_tokenizer, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("align")
    sft = prepare_sft(sorted((sample_dir / "instruct").iterdir()), str(chat_tokenizer),
                      SFTDataConfig(paths=("x",), seq_len=64), tmp / "sft")
    model_cfg = ModelConfig(vocab_size=sft["vocab_size"], n_layer=2, n_head=2, n_embd=64,
                            block_size=64, position="rotary")
    torch.manual_seed(0)
    random = save_model(tmp / "random.pt", build_model(model_cfg), model_cfg, step=0,
                        tokens_seen=0)
    base = finetune(tmp / "sft", random, parse_method({"kind": "full"}), cfg(30), tmp / "base",
                    CPU).model_path
    pairs = prepare_pairs(sorted((sample_dir / "preference").iterdir()), str(chat_tokenizer),
                          SFTDataConfig(paths=("x",), seq_len=64, val_fraction=0.2),
                          tmp / "pairs")
    return {"tmp": tmp, "base": base, "pairs": pairs, "val": Rows(tmp / "pairs" / "val.npy")}


def test_preference_files_are_accounted_for(setup) -> None:
    pairs = setup["pairs"]
    assert pairs["records"] == 302 and pairs["pairs"] == 300
    assert pairs["quarantined"] == {"identical_replies": 1, "not_a_pair": 1}
    rows = np.load(setup["tmp"] / "pairs" / "train.npy")
    assert rows.shape[1:] == (2, 4, 64) and len(rows) + len(setup["val"]) == 300
    assert not (rows[:, 0, 0] == rows[:, 1, 0]).all(axis=-1).any()  # the replies differ


@pytest.fixture(scope="module")
def reward_model(setup) -> Path:
    tmp = setup["tmp"]
    return align(tmp / "pairs", setup["base"], "reward", cfg(40, lr=1e-3), tmp / "rm",
                 CPU).model_path


def test_reward_model_accuracy_rises_above_chance(setup, reward_model) -> None:
    model = load_model(reward_model)  # the head is rebuilt from the checkpoint's record
    metrics = pair_metrics(model, setup["val"], "causal", "reward")
    print("reward model", metrics)
    assert metrics["pairs"] >= 40 and metrics["pair_accuracy"] > 0.7, metrics
    assert metrics["margin"] > 0


def test_dpo_raises_the_heldout_margin(setup) -> None:
    tmp = setup["tmp"]
    reference = load_model(setup["base"])
    before = pair_metrics(load_model(setup["base"]), setup["val"], "causal", "dpo",
                          reference=reference)
    assert before["margin"] == pytest.approx(0.0, abs=1e-5)  # the policy starts as the reference
    result = align(tmp / "pairs", setup["base"], "dpo", cfg(30, lr=1e-3), tmp / "dpo", CPU,
                   method=parse_method({"kind": "lora", "rank": 8,
                                        "target_modules": ["q", "k", "v", "proj", "up", "down"]}),
                   beta=0.1)
    after = pair_metrics(load_model(result.model_path), setup["val"], "causal", "dpo",
                         reference=reference)
    print("dpo", before, after)
    assert after["margin"] > 0.05 and after["pair_accuracy"] > 0.6, after


def test_ppo_raises_the_reward_while_the_kl_stays_under_target(setup, reward_model,
                                                               chat_tokenizer,
                                                               sample_dir) -> None:
    """Rollouts with the KV-cache generator, the reward model's score minus the KL penalty,
    GAE and clipped losses: the mean reward of the last iterations beats the first, the KL to
    the reference stays under its target, and the policy's replies beat the reference's."""
    from lmforge.model.ppo import PPOConfig, add_value_head, ppo, reward_scorer, win_rate
    from lmforge.tasks.sft import ChatTemplate

    template = ChatTemplate(str(chat_tokenizer))
    prompts = []
    for line in (sample_dir / "preference" / "preferences.jsonl").read_text().splitlines():
        try:
            prompts.append(template.prompt(to_pair(json.loads(line)).prompt))
        except BadRecord:
            continue
    policy, reference = add_value_head(load_model(setup["base"])), load_model(setup["base"])
    for p in policy.parameters():
        p.requires_grad_(True)
    score = reward_scorer(load_model(reward_model))
    cfg_ppo = PPOConfig(iterations=10, rollouts=16, minibatch=8, epochs=2, lr=3e-4,
                        max_new_tokens=12, kl_coef=0.05, kl_target=6.0)
    history = ppo(policy, reference, score, prompts[:100], cfg_ppo, stop=template.eot,
                  pad=template.pad)
    first, last = history[0]["ppo/reward"], np.mean([h["ppo/reward"] for h in history[-3:]])
    print("ppo", first, last, history[-1])
    assert last > first + 0.2, history
    assert all(h["ppo/kl"] < cfg_ppo.kl_target for h in history)
    assert history[-1]["ppo/kl"] > 0 and 0 <= history[-1]["ppo/clip_fraction"] < 1
    wins = win_rate(policy, reference, score, prompts[100:140], stop=template.eot,
                    pad=template.pad, max_new_tokens=12)
    assert wins > 0.5, wins


def test_a_killed_ppo_run_resumes_exactly(setup, reward_model, chat_tokenizer, sample_dir,
                                          tmp_path) -> None:
    from lmforge.model.ppo import PPOConfig, add_value_head, ppo, reward_scorer
    from lmforge.tasks.preference import prompts_of
    from lmforge.tasks.sft import ChatTemplate

    template = ChatTemplate(str(chat_tokenizer))
    prompts = [template.prompt(p) for p in prompts_of(
        [sample_dir / "preference" / "preferences.jsonl"])][:40]
    score = reward_scorer(load_model(reward_model))
    cfg_ppo = PPOConfig(iterations=4, rollouts=8, minibatch=4, epochs=1, lr=3e-4,
                        max_new_tokens=8)

    def run(checkpoint, log=None):
        torch.manual_seed(0)
        policy = add_value_head(load_model(setup["base"]))
        for p in policy.parameters():
            p.requires_grad_(True)
        history = ppo(policy, load_model(setup["base"]), score, prompts, cfg_ppo,
                      stop=template.eot, pad=template.pad, log=log, checkpoint=checkpoint)
        return policy, history

    whole, whole_history = run(tmp_path / "whole.pt")

    def crash(iteration, metrics):
        if iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed.pt", crash)
    resumed, history = run(tmp_path / "killed.pt")
    assert history == whole_history
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 resumed.state_dict().values(), strict=True))


@pytest.mark.parametrize("objective", ["dpo", "reward"])
def test_a_killed_pair_run_resumes_exactly(setup, tmp_path, objective) -> None:
    """DPO and the reward model go through the trainer: killed after its checkpoint at step 3,
    a rerun continues from it and ends with the weights of an uninterrupted run."""
    def run(out, on_step=None):
        return align(setup["tmp"] / "pairs", setup["base"], objective,
                     cfg(6, checkpoint_every=3, lr=1e-3), out, CPU, on_step=on_step)

    whole = load_model(run(tmp_path / "whole").model_path).state_dict()

    def crash(step: int) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", crash)
    result = run(tmp_path / "killed")
    assert result.resumed_from == 3 and result.steps == 6
    resumed = load_model(result.model_path).state_dict()
    assert whole.keys() == resumed.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)
