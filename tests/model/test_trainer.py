from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lmforge.model.checkpoint import CheckpointManager, load_model
from lmforge.model.config import ModelConfig
from lmforge.model.data import PackedSequences, TokenStream
from lmforge.model.distributed import Runtime
from lmforge.model.evaluate import evaluate_lm
from lmforge.model.objectives import SpecialTokens
from lmforge.model.optim import lr_at
from lmforge.model.train_config import TrainConfig
from lmforge.model.trainer import Trainer
from lmforge.model.transformer import build_model

CPU = Runtime(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
SPECIAL = SpecialTokens(pad=0, eot=1, sentinels=tuple(range(40, 64)))
TINY = {"flavor": "custom", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 40,
        "vocab_size": 64}


def test_lr_schedule_warmup_then_cosine() -> None:
    kw = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert all(lr_at(s, **kw) >= lr_at(s + 1, **kw) for s in range(10, 110))


@pytest.fixture
def data(tmp_path: Path) -> PackedSequences:
    rng = np.random.default_rng(0)
    pattern = rng.integers(2, 40, 17)
    np.tile(pattern, 300).astype("<u2").tofile(tmp_path / "tokens.bin")
    return PackedSequences(TokenStream([tmp_path / "tokens.bin"], "<u2"), 16)


def make(data: PackedSequences, out: Path, model: dict | None = None, **train
         ) -> tuple[Trainer, dict[int, dict[str, float]]]:
    logged: dict[int, dict[str, float]] = {}
    cfg = TrainConfig(**({"steps": 30, "batch_size": 8, "lr": 1e-2, "warmup_steps": 3,
                          "eval_every": 10, "eval_batches": 2, "log_every": 1,
                          "device": "cpu"} | train))
    trainer = Trainer(ModelConfig(**(TINY | (model or {}))), cfg, CPU, train=data, val=data,
                      out_dir=out, special=SPECIAL,
                      log_metrics=lambda s, v: logged.setdefault(s, {}).update(v))
    return trainer, logged


@pytest.mark.parametrize(("arch", "position", "objective"), [
    ("causal", "learned", "lm"), ("causal", "rotary", "lm"), ("prefix", "sinusoidal", "lm"),
    ("prefix", "rotary", "denoise"), ("encoder_decoder", "learned", "denoise")])
def test_every_architecture_and_objective_learns(data, tmp_path, arch, position,
                                                 objective) -> None:
    trainer, logged = make(data, tmp_path, {"arch": arch, "position": position},
                           objective={"kind": objective})
    before = trainer.evaluate()["loss"]
    result = trainer.fit()
    assert before > math.log(40) * 0.8
    assert result.val_loss < 0.7 * before, (arch, objective, before, result.val_loss)
    assert logged[30]["train/loss"] < 0.7 * logged[1]["train/loss"]
    if objective == "lm":
        assert result.tokens_seen == 30 * 8 * 16


def test_checkpoint_resume_is_exact_and_export_reloads(data, tmp_path) -> None:
    full, full_log = make(data, tmp_path / "full", checkpoint_every=10, steps=20)
    result = full.fit()
    assert [p.name for p in CheckpointManager(tmp_path / "full" / "checkpoints").complete()] \
        == ["step-0000010", "step-0000020"]
    resumed, resumed_log = make(data, tmp_path / "again", steps=20)
    restored = resumed.resume(tmp_path / "full" / "checkpoints" / "step-0000010")
    assert restored is not None and restored.step == 10
    assert resumed.loader.state_dict() == {"epoch": 0, "consumed": 80}
    again = resumed.fit()
    for step in range(11, 21):
        assert resumed_log[step]["train/loss"] == pytest.approx(
            full_log[step]["train/loss"], rel=1e-5), step
    assert again.resumed_from == 10 and again.tokens_seen == result.tokens_seen
    model = load_model(result.model_path)
    assert evaluate_lm(model, data, batch_size=8, max_batches=2)["loss"] == pytest.approx(
        result.val_loss, rel=1e-4)
    meta = json.loads((result.checkpoint / "meta.json").read_text())
    assert meta["mlflow_run_id"] is None and meta["position"]["consumed"] == 160


def test_keep_last_k_and_unfinished_saves_are_ignored(data, tmp_path) -> None:
    trainer, _ = make(data, tmp_path, steps=12, checkpoint_every=3, keep_checkpoints=2)
    trainer.fit()
    manager = CheckpointManager(tmp_path / "checkpoints")
    assert [p.name for p in manager.complete()] == ["step-0000009", "step-0000012"]
    (tmp_path / "checkpoints" / "step-0000015.tmp").mkdir()  # a crash mid-save
    assert manager.latest() is not None and manager.latest().name == "step-0000012"
    resumed, _ = make(data, tmp_path, steps=12)
    assert resumed.resume() is not None and resumed.step == 12


def test_activation_checkpointing_gives_the_same_losses(data, tmp_path) -> None:
    plain, plain_log = make(data, tmp_path / "a", steps=5)
    plain.fit()
    ac, ac_log = make(data, tmp_path / "b", steps=5,
                      deepspeed={"activation_checkpointing": {"enabled": True}})
    ac.fit()
    for step in range(1, 6):
        assert ac_log[step]["train/loss"] == pytest.approx(plain_log[step]["train/loss"],
                                                           rel=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(data, tmp_path, precision) -> None:
    trainer, logged = make(data, tmp_path, steps=20,
                           deepspeed={precision: {"enabled": True}})
    result = trainer.fit()
    assert result.val_loss < 0.8 * logged[1]["train/loss"]
    assert next(trainer.model.parameters()).dtype == torch.float32  # fp32 master weights
    assert ("train/loss_scale" in logged[20]) is (precision == "fp16")


def test_gradient_accumulation_matches_a_bigger_batch(data, tmp_path) -> None:
    big, big_log = make(data, tmp_path / "a", steps=4, batch_size=8)
    big.fit()
    acc, acc_log = make(data, tmp_path / "b", steps=4, batch_size=4,
                        deepspeed={"gradient_accumulation_steps": 2})
    acc.fit()
    for step in range(1, 5):
        assert acc_log[step]["train/loss"] == pytest.approx(big_log[step]["train/loss"],
                                                            rel=1e-4)


def test_mfu_and_memory_are_reported(data, tmp_path) -> None:
    trainer, logged = make(data, tmp_path, steps=2, peak_flops=1e12)
    trainer.fit()
    assert 0 < logged[2]["train/mfu"] < 1
    assert logged[2]["memory/rank0/optimizer_mb"] == pytest.approx(
        2 * logged[2]["memory/rank0/params_mb"], rel=0.01)  # Adam: two moments


@pytest.mark.parametrize(("model", "train", "message"), [
    ({}, {"deepspeed": {"zero_optimization": {"stage": 3}}}, "at least 2 processes"),
    ({}, {"objective": {"kind": "denoise"}}, "needs model.arch 'prefix'"),
    ({"arch": "encoder_decoder"}, {}, "trains with objective 'denoise'"),
    ({}, {"deepspeed": {"pipeline": {"stages": 2}}}, "cannot be split"),
])
def test_unsupported_combinations_are_clear_errors(data, tmp_path, model, train,
                                                   message) -> None:
    with pytest.raises(ValueError, match=message):
        make(data, tmp_path, model, **train)


def test_deepspeed_config_validation() -> None:
    with pytest.raises(ValueError, match="exclusive"):
        TrainConfig(deepspeed={"bf16": {"enabled": True}, "fp16": {"enabled": True}})
    with pytest.raises(ValueError, match="stage 2 or 3"):
        TrainConfig(deepspeed={"zero_optimization": {"stage": 1,
                                                     "offload_optimizer": {"device": "cpu"}}})
    with pytest.raises(ValueError, match=r"offload_param needs zero_optimization\.stage 3"):
        TrainConfig(deepspeed={"zero_optimization": {"stage": 2,
                                                     "offload_param": {"device": "cpu"}}})


def test_bits_per_byte(data) -> None:
    model = build_model(ModelConfig(**(TINY | {"n_layer": 1, "n_embd": 8, "n_head": 1})))
    out = evaluate_lm(model, data, text_bytes=len(data.stream) * 4)
    assert out["bits_per_byte"] == pytest.approx(out["loss"] / math.log(2) / 4, rel=0.01)
