"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP), and the consolidated export.

A checkpoint is a folder ``step-NNNNNNN/`` holding DCP shards of the model and optimizer state
(every rank writes its own pieces, in parallel), ``rng-rank<R>.pt`` per rank, and
``meta.json`` (step, tokens, scheduler, data position, MLflow run id, world size). State is
keyed by parameter name (``layers.3.attn.q.weight``, ``optim.layers.3.attn.q.weight.exp_avg``)
whatever the parallelism, so DCP re-shards on load: a checkpoint written by 2 ranks under
ZeRO-3 loads into 1 rank, and the other way round.

Only complete checkpoints count: a folder is written as ``step-N.tmp`` and renamed once every
rank has finished, so a crash mid-save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from lmforge.model.atomic import atomic_path, commit, write_json
from lmforge.model.config import ModelConfig
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.tensor import DTensor

META, EXPORT, ADAPTER = "meta.json", "model.pt", "adapter.safetensors"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def optimizer_state(optimizer: torch.optim.Optimizer, names: dict[nn.Parameter, str]
                    ) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state this rank holds, keyed ``optim.<param>.<key>``.

    Works for plain optimizers (all parameters, DTensor shards under FSDP) and for ZeRO-1's
    ``ZeroRedundancyOptimizer`` (only the partition this rank owns), so the keys of all ranks
    together always cover the whole optimizer.
    """
    local = getattr(optimizer, "optim", optimizer)  # ZeroRedundancyOptimizer wraps its shard
    out: dict[str, torch.Tensor] = {}
    for param, state in local.state.items():
        for key, value in state.items():
            if torch.is_tensor(value):
                out[f"optim.{names[param]}.{key}"] = value
    return out


def _empty_optimizer_state(optimizer: torch.optim.Optimizer, names: dict[nn.Parameter, str],
                           saved: Iterable[str]) -> dict[str, torch.Tensor]:
    """Tensors shaped like this rank's optimizer state, for DCP to fill in place."""
    local = getattr(optimizer, "optim", optimizer)
    keys = set(saved)
    out: dict[str, torch.Tensor] = {}
    for group in local.param_groups:
        for param in group["params"]:
            prefix = f"optim.{names[param]}."
            for key in sorted(k[len(prefix):] for k in keys if k.startswith(prefix)
                              and "." not in k[len(prefix):]):
                # scalar state (Adam's step) is a plain tensor; moments are shaped like the param
                out[prefix + key] = (torch.zeros((), dtype=torch.float32) if key == "step"
                                     else torch.zeros_like(param.detach()))
    return out


def _restore_optimizer(optimizer: torch.optim.Optimizer, names: dict[nn.Parameter, str],
                       loaded: dict[str, torch.Tensor]) -> None:
    local = getattr(optimizer, "optim", optimizer)
    for group in local.param_groups:
        for param in group["params"]:
            prefix = f"optim.{names[param]}."
            state = {k[len(prefix):]: v for k, v in loaded.items() if k.startswith(prefix)
                     and "." not in k[len(prefix):]}
            if state:
                local.state[param] = state


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@dataclass(frozen=True)
class Restored:
    step: int
    meta: dict[str, Any]
    path: Path


class CheckpointManager:
    """Save, find, load and prune the checkpoints of one run folder."""

    def __init__(self, folder: Path, keep: int = 3) -> None:
        self.folder, self.keep = folder, keep

    def complete(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("step-*")
                      if p.is_dir() and not p.name.endswith(".tmp") and (p / META).exists())

    def latest(self) -> Path | None:
        found = self.complete()
        return found[-1] if found else None

    def save(self, step: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
             names: dict[nn.Parameter, str], meta: dict[str, Any]) -> Path:
        """Collective: every rank calls it. Returns the finished folder."""
        final = self.folder / f"step-{step:07d}"
        # Every rank writes its shards into one folder, so its temporary name is shared (one
        # collective writer) rather than unique per process as model.atomic makes it; the
        # rename at the end is the same commit.
        tmp = final.with_name(final.name + ".tmp")
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        state = {"model": get_model_state_dict(model), **optimizer_state(optimizer, names)}
        dcp.save(state, checkpoint_id=tmp, no_dist=not _distributed())
        torch.save(_rng_state(), tmp / f"rng-rank{_rank()}.pt")
        _barrier()
        if _rank() == 0:
            write_json(tmp / META, {"step": step, **meta}, indent=1, default=str)
            shutil.rmtree(final, ignore_errors=True)
            commit(tmp, final)
            for old in self.complete()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        _barrier()
        return final

    def load(self, path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None,
             names: dict[nn.Parameter, str]) -> Restored:
        """Collective: fill model and optimizer (re-sharded to this run's layout), restore this
        rank's RNG if that rank existed before, and return the metadata."""
        meta = json.loads((path / META).read_text())
        saved = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
        state: dict[str, Any] = {"model": get_model_state_dict(model)}
        if optimizer is not None:
            state |= _empty_optimizer_state(optimizer, names, saved)
        dcp.load(state, checkpoint_id=path, no_dist=not _distributed())
        set_model_state_dict(model, state["model"])
        if optimizer is not None:
            _restore_optimizer(optimizer, names, {k: v for k, v in state.items()
                                                  if k.startswith("optim.")})
        rng = path / f"rng-rank{_rank()}.pt"
        if rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
        return Restored(int(meta["step"]), meta, path)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the whole model's state on CPU (gathered from FSDP / tensor-parallel
    shards); every rank gets it, rank 0 writes it."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))
    return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}


def _build(model_cfg: ModelConfig, adapter: dict[str, Any] | None) -> nn.Module:
    """The architecture, with a fine-tuning method's adapter modules when one was trained."""
    from lmforge.model.transformer import build_model

    model = build_model(model_cfg)
    if adapter:
        from lmforge.model.finetune import apply_method

        apply_method(model, adapter)
    return model


def _consolidated(checkpoint: Path, model_cfg: ModelConfig,
                  adapter: dict[str, Any] | None = None) -> nn.Module:
    model = _build(model_cfg, adapter)
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # one process reading on purpose: not worth a warning
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=checkpoint, no_dist=True)
    model.load_state_dict(state["model"])
    return model


def export_checkpoint(checkpoint: Path, model_cfg: ModelConfig, out: Path) -> Path:
    """Consolidate a (sharded) checkpoint into one ``model.pt`` loadable without torch.distributed:
    read by one process, whatever parallelism wrote it (pipeline stages included).

    A fine-tuning run's checkpoint (``adapter`` in its meta) also writes the adapter alone
    (``adapter.safetensors`` beside ``out``); a method that folds into the base (LoRA) then
    exports the plain architecture, the others a model that rebuilds its adapter on load."""
    meta = json.loads((checkpoint / META).read_text())
    adapter = meta.get("adapter")
    model = _consolidated(checkpoint, model_cfg, adapter)
    if adapter and adapter.get("kind") == "full":  # every weight trained: a plain model
        adapter = None
    if adapter:
        from lmforge.model.finetune import parse_method, save_adapter, unload

        save_adapter(out.with_name(ADAPTER), model, parse_method(adapter), meta.get("base") or {})
        plain = unload(model, adapter)
        if plain is not None:
            model, adapter = plain, None
    return save_model(out, model, model_cfg, step=int(meta["step"]),
                      tokens_seen=int(meta.get("tokens_seen", 0)), adapter=adapter)


def load_any(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A model in eval mode from ``model.pt`` or a sharded checkpoint folder, with its step,
    tokens seen and (checkpoints only) the MLflow run that trained it."""
    if path.is_dir():
        meta = json.loads((path / META).read_text())
        cfg = ModelConfig.model_validate(meta["model_config"])
        return _consolidated(path, cfg, meta.get("adapter")).eval(), meta
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _from_state(state), {"step": state.get("step"), "tokens_seen": state.get("tokens_seen")}


def save_model(out: Path, model: nn.Module | dict[str, torch.Tensor], model_cfg: ModelConfig,
               *, step: int, tokens_seen: int, adapter: dict[str, Any] | None = None,
               compression: list[dict[str, Any]] | None = None) -> Path:
    """Atomically write the consolidated model and its config (and the fine-tuning method
    whose adapter modules its weights include, and the compression methods that made it, if
    any: stored as those methods encode it)."""
    extra: dict[str, Any] = {"adapter": adapter} if adapter else {}
    if compression:
        from lmforge.model.compress import encoded_state

        assert isinstance(model, nn.Module), "a compressed model is saved from its modules"
        weights, extra["compression"] = encoded_state(model, compression), compression
    else:
        weights = model.state_dict() if isinstance(model, nn.Module) else model
    with atomic_path(out) as tmp:
        torch.save({"model": weights, "model_config": model_cfg.model_dump(mode="json"),
                    "step": step, "tokens_seen": tokens_seen, **extra}, tmp)
    return out


def load_model(path: Path) -> nn.Module:
    """The consolidated model of ``save_model``/``export_checkpoint``, in eval mode."""
    return _from_state(torch.load(path, map_location="cpu", weights_only=True))


def _from_state(state: dict[str, Any]) -> nn.Module:
    model = _build(ModelConfig.model_validate(state["model_config"]), state.get("adapter"))
    if state.get("compression"):
        from lmforge.model.compress import restore

        return restore(model, state["compression"], state["model"]).eval()
    model.load_state_dict(state["model"])
    return model.eval()
