"""Compression of a trained model (``model.compress``'s methods), the short recovery fine-tune
some methods need, and each variant's cost measured apart: file size, weight bytes in memory,
and the memory a load + generation adds, tokens/s and latency of generation through the
serving engine in a fresh process (so one variant's allocations do not count for the next).

The recovery fine-tune is a short single-process loop here, not the trainer: the trainer's
parallel wrappers shard each block on its own (a block shared by two layers would be sharded
twice) and its checkpoints and exports rebuild plain architectures only.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmforge.model.checkpoint import load_any, save_model
from lmforge.model.compress import COMPRESSIONS, CompressSpec, compress, parse_compression
from lmforge.model.compress.base import stored_bytes
from lmforge.model.objectives import ObjectiveConfig, SpecialTokens, forward_loss, make_batch
from lmforge.model.train_config import TrainConfig
from lmforge.tasks.training import sequences
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


def _every_method() -> list[Any]:
    return [parse_compression({"kind": kind}) for kind in COMPRESSIONS]


class CompressSection(BaseModel):
    """The ``compress`` section: which variants of the trained model to make and measure."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: Path | None = Field(None, description="model to compress (default: the run's "
                              "fine-tuned model if any, else the trained one)")
    methods: list[CompressSpec] = Field(default_factory=_every_method, min_length=1,
                                        description="one variant per entry (kind + options)")
    recover_steps: int = Field(40, ge=0, description="fine-tune steps after pruning/sharing "
                               "(distillation has its own: distill.steps)")
    recover_lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    measure_prompts: int = Field(8, ge=1, description="held-out prompts generated from")
    prompt_tokens: int = Field(32, ge=1)
    new_tokens: int = Field(32, ge=1)
    register_aliases: bool = Field(True, description="register each variant under its own "
                                   "alias")


@dataclass(frozen=True)
class Variant:
    kind: str
    spec: dict[str, Any]
    path: Path
    file_bytes: int
    weight_bytes: int
    recovered_steps: int
    recover_loss: float | None
    seconds: float


def label(spec: dict[str, Any]) -> str:
    """A variant's name: its kind and the options that differ from the defaults."""
    cfg = parse_compression(spec)
    default = type(cfg)().model_dump()
    extra = [f"{k}{v}" for k, v in cfg.model_dump().items() if k != "kind" and v != default[k]]
    return "-".join([cfg.kind, *(str(e).replace(".", "p") for e in extra)])


def weight_bytes(model: nn.Module) -> int:
    """Bytes the parameters and buffers take in memory (shared tensors once)."""
    return stored_bytes({**dict(model.named_parameters()), **dict(model.named_buffers())})


def recover(model: nn.Module, tokens_dir: Path, manifest: dict[str, Any],
            objective: ObjectiveConfig, special: SpecialTokens, *, steps: int, lr: float,
            batch_size: int, seed: int = 0) -> float:
    """``steps`` AdamW steps on the training split; the last step's loss."""
    from lmforge.model.data import SequenceLoader

    data = sequences(tokens_dir, manifest, "train")
    loader = iter(SequenceLoader(data, batch_size, seed=seed))
    trainable = [p for p in model.parameters() if p.is_floating_point()]
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = make_batch(next(loader), model.cfg.arch, objective,  # type: ignore[union-attr]
                           special, rng)
        loss = forward_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    for p in trainable:
        p.requires_grad_(False)
    return float(loss.detach())


def distill(teacher: nn.Module, cfg: Any, tokens_dir: Path, out_dir: Path,
            train: TrainConfig, special: SpecialTokens) -> tuple[nn.Module, float]:
    """The student of ``cfg`` (``model.compress.distill``) trained against ``teacher`` through
    the trainer, in this process; the student and its last training loss."""
    from lmforge.model.checkpoint import load_model
    from lmforge.model.compress.distill import kd_loss
    from lmforge.model.distributed import LaunchConfig, init_runtime
    from lmforge.model.parallel.config import DeepSpeedConfig
    from lmforge.model.trainer import Trainer
    from lmforge.tasks.training import load_dataset_manifest

    student = compress(copy.deepcopy(teacher), cfg)
    state = student.state_dict()
    manifest = load_dataset_manifest(tokens_dir)
    run = train.model_copy(update={
        "steps": cfg.steps, "lr": cfg.lr, "min_lr": cfg.lr / 10,
        "warmup_steps": min(train.warmup_steps, cfg.steps // 4), "eval_every": cfg.steps,
        "checkpoint_every": 0, "resume": "never", "log_every": cfg.steps,
        "deepspeed": DeepSpeedConfig(), "launch": LaunchConfig()})

    def init(model: nn.Module) -> nn.Module:
        model.load_state_dict(state)
        return model

    trainer = Trainer(student.cfg, run, init_runtime(run.device),  # type: ignore[arg-type]
                      train=sequences(tokens_dir, manifest, "train"),
                      val=sequences(tokens_dir, manifest, "val"), out_dir=out_dir,
                      special=special, init=init, loss_fn=kd_loss(teacher, cfg))
    result = trainer.fit()
    return load_model(result.model_path), result.train_loss


def compress_variant(base: Path, spec: dict[str, Any], tokens_dir: Path, out: Path,
                     section: CompressSection, train: TrainConfig,
                     special: SpecialTokens) -> Variant:
    """One variant of ``base``: compressed, recovered or distilled where the method asks,
    saved under ``out/LABEL/model.pt``."""
    from lmforge.tasks.training import load_dataset_manifest

    start = time.perf_counter()
    model, meta = load_any(base)
    cfg = parse_compression(spec)
    method = COMPRESSIONS[cfg.kind]
    folder = out / label(spec)
    steps, last = 0, None
    if method.teacher:
        model, last = distill(model, cfg, tokens_dir, folder / "train", train, special)
        steps = cfg.steps  # type: ignore[attr-defined]
    else:
        model = compress(copy.deepcopy(model), cfg)
        if method.recover and section.recover_steps:
            if method.hold is not None:
                method.hold(model)
            last = recover(model, tokens_dir, load_dataset_manifest(tokens_dir),
                           train.objective, special, steps=section.recover_steps,
                           lr=section.recover_lr, batch_size=section.batch_size)
            steps = section.recover_steps
    path = folder / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, model, model.cfg, step=int(meta.get("step") or 0),  # type: ignore[arg-type]
               tokens_seen=int(meta.get("tokens_seen") or 0),
               compression=[cfg.model_dump(mode="json")])
    return Variant(cfg.kind, cfg.model_dump(mode="json"), path, path.stat().st_size,
                   weight_bytes(model), steps, last, time.perf_counter() - start)


def held_out_prompts(tokens_dir: Path, count: int, length: int) -> list[list[int]]:
    """The first ``length`` tokens of ``count`` validation windows, spread over the split."""
    from lmforge.tasks.training import load_dataset_manifest

    val = sequences(tokens_dir, load_dataset_manifest(tokens_dir), "val")
    picks = np.linspace(0, len(val) - 1, num=min(count, len(val))).astype(int)
    return [[int(t) for t in val[int(i)][:length]] for i in picks]


def measure(model_path: Path, prompts: list[list[int]], new_tokens: int,
            timeout: float = 600.0) -> dict[str, float]:
    """Generation cost of a saved model in a fresh process: memory added by loading and
    generating, load seconds, tokens/s of all prompts through the engine at once, and one
    request's latency."""
    job = {"model": str(model_path), "prompts": prompts, "new_tokens": new_tokens}
    done = subprocess.run([sys.executable, "-m", "lmforge.tasks.compression"],
                          input=json.dumps(job), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {model_path} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure_here(job: dict[str, Any]) -> dict[str, float]:
    import psutil
    from lmforge.model.checkpoint import load_model
    from lmforge.model.engine import generate_many
    from lmforge.model.sampling import Sampling

    torch.set_num_threads(1)  # one core each: variants compare on equal terms
    proc = psutil.Process()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    model = load_model(Path(job["model"]))
    loaded = time.perf_counter() - t0
    rss = [proc.memory_info().rss]
    sampling = Sampling(max_new_tokens=int(job["new_tokens"]))
    prompts = job["prompts"]
    generate_many(model, prompts[:1], Sampling(max_new_tokens=2))  # first-call costs out
    t0 = time.perf_counter()
    one = generate_many(model, prompts[:1], sampling)
    latency = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = generate_many(model, prompts, sampling)
    seconds = time.perf_counter() - t0
    rss.append(proc.memory_info().rss)
    # what loading and generating added to the process (its start-up, imports included, is
    # the same for every variant and would hide the difference)
    return {"memory_mb": (max(rss) - before) / 2**20, "load_seconds": loaded,
            "latency_s": latency, "tokens_per_s": sum(map(len, out)) / seconds,
            "single_tokens_per_s": len(one[0]) / latency}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_measure_here(json.loads(sys.stdin.read()))) + "\n")
