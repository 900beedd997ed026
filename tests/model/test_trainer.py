from __future__ import annotations

import math

import numpy as np
import pytest

from model.checkpoint import load_model
from model.config import ModelConfig
from model.data import PackedSequences, SequenceLoader, TokenStream
from model.evaluate import evaluate_lm
from model.gpt import GPT
from model.trainer import TrainConfig, fit, lr_at


def test_lr_schedule_warmup_then_cosine() -> None:
    kw = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert all(lr_at(s, **kw) >= lr_at(s + 1, **kw) for s in range(10, 110))


@pytest.fixture
def repeating_data(tmp_path) -> tuple[PackedSequences, PackedSequences]:
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 40, 17)
    np.tile(pattern, 400).astype("<u2").tofile(tmp_path / "train.bin")
    np.tile(pattern, 40).astype("<u2").tofile(tmp_path / "val.bin")
    mk = lambda name: PackedSequences(TokenStream([tmp_path / name], "<u2"), 16)  # noqa: E731
    return mk("train.bin"), mk("val.bin")


def test_loss_falls_and_checkpoint_reloads(repeating_data, tmp_path) -> None:
    train, val = repeating_data
    cfg_m = ModelConfig(flavor="custom", n_layer=2, n_head=2, n_embd=32, block_size=16,
                        vocab_size=40)
    cfg = TrainConfig(steps=60, batch_size=8, lr=1e-2, warmup_steps=5, eval_every=30,
                      log_every=5, device="cpu")
    logged: list[tuple[int, dict]] = []
    model = GPT(cfg_m)
    before = evaluate_lm(model, val)["loss"]
    result = fit(model, cfg_m, SequenceLoader(train, 8), val, cfg, out_dir=tmp_path,
                 log_metrics=lambda s, v: logged.append((s, dict(v))))
    assert before > math.log(40) * 0.8
    assert result.val_loss < 0.5 * before
    assert result.tokens_seen == 60 * 8 * 16
    assert any("val/loss" in v for _, v in logged) and logged[0][1]["train/lr"] > 0
    reloaded = load_model(result.checkpoint)
    assert evaluate_lm(reloaded, val)["loss"] == pytest.approx(result.val_loss, rel=1e-4)


def test_bits_per_byte(repeating_data) -> None:
    _, val = repeating_data
    model = GPT(ModelConfig(flavor="custom", n_layer=1, n_head=1, n_embd=8, block_size=16,
                            vocab_size=40))
    out = evaluate_lm(model, val, text_bytes=len(val.stream) * 4)
    assert out["bits_per_byte"] == pytest.approx(out["loss"] / math.log(2) / 4, rel=0.01)
