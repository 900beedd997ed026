"""The training loop, DeepSpeed-style: one config picks ZeRO stage, precision, offload, activation
checkpointing, accumulation and clipping; the same code runs on 1 CPU process, on gloo ranks,
and on NCCL GPUs under torchrun.

Per step: ``gradient_accumulation_steps`` micro-batches (gradient sync only on the last one),
unscale (fp16), clip the global norm, AdamW step, warmup + cosine learning rate. Every
``eval_every`` steps a distributed evaluation, every ``checkpoint_every`` steps a sharded
checkpoint; at the end a consolidated ``model.pt``. Metrics leave through a
``log_metrics(step, values)`` callback called on rank 0 only: the loop knows nothing of MLflow.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lmforge.model.checkpoint import CheckpointManager, Restored, export_checkpoint
from lmforge.model.config import ModelConfig
from lmforge.model.data import PackedSequences, Rows, SequenceLoader
from lmforge.model.distributed import Runtime, all_sum, build_mesh
from lmforge.model.layers import Block
from lmforge.model.objectives import (
    Batch,
    SpecialTokens,
    forward_loss,
    lm_loss,
    make_batch,
    pair_batch,
    sft_batch,
)
from lmforge.model.optim import flops_per_token, local_bytes, lr_at, param_groups, total_grad_norm
from lmforge.model.parallel import ParallelDims, parallelize
from lmforge.model.parallel.pipeline import build_schedule, split_stages
from lmforge.model.train_config import LogMetrics, TrainConfig, TrainResult, check_supported
from lmforge.model.transformer import DecoderLM, build_model, count_params
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
MiB = 2**20
EVAL_KEY = 2**40  # seeds evaluation draws apart from any training epoch


class Trainer:
    """Builds the parallel model, optimizer and data position, then trains. Every rank
    constructs one; rank 0 reports."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, runtime: Runtime, *,
                 train: PackedSequences | Rows, val: PackedSequences | Rows | None,
                 out_dir: Path, special: SpecialTokens | None = None,
                 log_metrics: LogMetrics | None = None, run_id: str | None = None,
                 init: Callable[[nn.Module], nn.Module] | None = None,
                 adapter: Mapping[str, Any] | None = None,
                 base: Mapping[str, Any] | None = None,
                 loss_fn: Callable[[nn.Module, Batch, str], torch.Tensor] | None = None
                 ) -> None:
        """``init``: applied to the freshly built model on every rank before it is placed and
        parallelised (fine-tuning: load the base weights, add the method's adapter and
        freeze the rest); ``adapter`` (the method's config) and ``base`` (where the base model
        came from) go into every checkpoint, so exports rebuild and name the adapter;
        ``loss_fn(model, batch, reduction)`` replaces the token loss (alignment objectives on
        preference pairs, ``model.align``)."""
        self.loss_fn = loss_fn or forward_loss
        self.adapter, self.base = dict(adapter or {}), dict(base or {})
        self.model_cfg, self.cfg, self.runtime = model_cfg, cfg, runtime
        self.ds, self.val, self.special, self.run_id = cfg.deepspeed, val, special, run_id
        self.log = log_metrics if runtime.main else None
        self.out_dir = out_dir
        self.dims = ParallelDims(runtime.world, self.ds.tensor_parallel.size,
                                 self.ds.pipeline.stages)
        check_supported(model_cfg, cfg, self.dims, runtime.world)
        self.mesh = build_mesh(runtime, self.dims)
        self.dp_rank = self.mesh["dp"].get_local_rank() if self.mesh is not None else 0
        self.dp = self.dims.dp
        device = runtime.device

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        full = build_model(model_cfg)
        if init is not None:
            full = init(full)
        self.n_params = count_params(full)
        self.schedule: Any = None
        if self.dims.pp_enabled:
            assert isinstance(full, DecoderLM)
            self.model: nn.Module = split_stages(full, runtime.rank, self.dims.pp).to(device)
            self.stage_first = runtime.rank == 0
            self.stage_last = runtime.rank == self.dims.pp - 1
            if self.ds.activation_checkpointing.enabled:
                for block in self.model.modules():
                    if isinstance(block, Block):
                        block.checkpointing = True
        else:
            full = full.to(device)
            if cfg.compile:
                for block in (m for m in full.modules() if isinstance(m, Block)):
                    block.compile()  # in place: parameter names (and checkpoints) unchanged
            self.model = parallelize(full, cfg=self.ds, dims=self.dims, device=device,
                                     mesh=self.mesh, n_head=model_cfg.n_head)
        self.inner = self.model.module if isinstance(self.model, DistributedDataParallel) \
            else self.model
        self.names = {p: n for n, p in self.inner.named_parameters()}
        self.params = list(self.names)
        self.trainable = [p for p in self.params if p.requires_grad]  # fine-tuning: adapters
        self.optimizer = self._optimizer()
        precision = self.ds.precision
        self.fsdp = self.ds.zero_optimization.stage >= 2
        # FSDP casts parameters itself (MixedPrecisionPolicy); DDP/single use autocast
        self.autocast_dtype = AUTOCAST.get(precision) if not self.fsdp else None
        self.scaler = torch.amp.GradScaler(device.type, init_scale=2.0
                                           ** self.ds.fp16.initial_scale_power) \
            if precision == "fp16" else None
        if self.dims.pp_enabled:
            self.schedule = build_schedule(
                self.model, stage=runtime.rank, stages=self.dims.pp, device=device,
                group=dist.group.WORLD, microbatches=self.ds.pipeline.microbatches,
                schedule=self.ds.pipeline.schedule,
                loss_fn=lm_loss)

        self.loader = SequenceLoader(train, cfg.batch_size, seed=cfg.seed, rank=self.dp_rank,
                                     world=self.dp)
        self.seq_len = train.seq_len
        self.checkpoints = CheckpointManager(out_dir / "checkpoints", keep=cfg.keep_checkpoints)
        self.step, self.tokens_seen = 0, 0
        self.resumed_from: int | None = None
        self._restored: Path | None = None
        self._live_params = 0

    # -- set-up -------------------------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups = param_groups(self.inner, cfg.weight_decay)
        kwargs = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2)}
        if self.ds.zero_optimization.stage == 1 and self.dims.dp_enabled:
            # ZeRO-1: each rank keeps AdamW state only for its partition of the parameters
            zero = ZeroRedundancyOptimizer(groups[0]["params"], optimizer_class=torch.optim.AdamW,
                                           weight_decay=cfg.weight_decay, **kwargs)
            zero.add_param_group(groups[1])
            return zero
        if self.dims.tp_enabled and not self.ds.zero_optimization.stage >= 2:
            # tensor-parallel (DTensor) and replicated (plain) parameters side by side: the
            # multi-tensor kernels need one kind, so step parameter by parameter
            return torch.optim.AdamW(groups, foreach=False, **kwargs)
        fused = self.runtime.device.type == "cuda"
        return torch.optim.AdamW(groups, fused=fused, **kwargs)

    # -- state ----------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen, "loader": self.loader.state_dict(),
                "position": self.loader.position(), "mlflow_run_id": self.run_id,
                "world": self.runtime.world, "dims": {"dp": self.dp, "tp": self.dims.tp,
                                                       "pp": self.dims.pp},
                "scheduler": {"kind": "warmup_cosine", "lr": self.cfg.lr,
                              "min_lr": self.cfg.min_lr, "warmup_steps": self.cfg.warmup_steps,
                              "total_steps": self.cfg.steps, "last_lr": self.lr()},
                "model_config": self.model_cfg.model_dump(mode="json"),
                **({"adapter": self.adapter, "base": self.base} if self.adapter else {}),
                "train_config": self.cfg.model_dump(mode="json")}

    def save(self) -> Path:
        return self.checkpoints.save(self.step, model=self.inner, optimizer=self.optimizer,
                                     names=self.names, meta=self.meta())

    def resume(self, path: Path | None = None) -> Restored | None:
        """Load ``path`` (default: the newest complete checkpoint) into every rank."""
        path = path or self.checkpoints.latest()
        if path is None:
            return None
        restored = self.checkpoints.load(path, model=self.inner, optimizer=self.optimizer,
                                         names=self.names)
        self.step, self.tokens_seen = restored.step, int(restored.meta["tokens_seen"])
        self.loader.load_state_dict(restored.meta["loader"])
        self.resumed_from, self._restored = restored.step, restored.path
        return restored

    def lr(self, step: int | None = None) -> float:
        return lr_at(self.step if step is None else step, lr=self.cfg.lr, min_lr=self.cfg.min_lr,
                     warmup_steps=self.cfg.warmup_steps, total_steps=self.cfg.steps)

    # -- one step -------------------------------------------------------------------------------

    def _batch(self, window: torch.Tensor, rows: Sequence[tuple[int, ...]]) -> Batch:
        # a row's corruption / prefix length is a pure function of (seed, the window's place
        # in the data): a resumed run draws what the uninterrupted run would have, also with
        # another number of ranks
        if window.dim() >= 3:  # fine-tuning rows (3) or preference pairs (4): nothing drawn
            rows = pair_batch if window.dim() == 4 else sft_batch
            return rows(window, self.model_cfg.arch).to(self.runtime.device)
        rngs = [np.random.default_rng([self.cfg.seed, *row]) for row in rows]
        return make_batch(window, self.model_cfg.arch, self.cfg.objective, self.special,
                          rngs).to(self.runtime.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.runtime.device.type, dtype=self.autocast_dtype)

    def _sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Gradient reduction only on the last micro-batch of a step."""
        if isinstance(self.model, DistributedDataParallel) and not last:
            return self.model.no_sync()
        if self.fsdp:
            self.model.set_requires_gradient_sync(last)  # type: ignore[operator]
        return contextlib.nullcontext()

    def train_step(self, batches: Iterator[torch.Tensor]) -> dict[str, float]:
        """One optimizer step; returns this rank's loss, the grad norm and the tokens read."""
        accum = self.ds.gradient_accumulation_steps
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = 0.0, 0
        micro_batches = [self._batch(next(batches), self.loader.last_rows) for _ in range(accum)]
        scale = self._token_scale(micro_batches) if self.schedule is None else 0.0  # pp: own loss
        for micro, batch in enumerate(micro_batches):
            tokens += batch.inputs.numel() + (batch.decoder_inputs.numel()
                                              if batch.decoder_inputs is not None else 0)
            if self.schedule is not None:
                loss_sum += self._pipeline_step(batch) / accum
                continue
            with self._sync(micro == accum - 1), self._autocast():
                loss = self.loss_fn(self.model, batch, "sum") * scale
            if micro == 0:  # parameters held between forward and backward (ZeRO-2 vs -3)
                self._live_params = max(self._live_params,
                                        local_bytes(iter(self.inner.parameters())))
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += float(loss.detach())
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = total_grad_norm(self.trainable, pipeline=self.schedule is not None)
        if self.ds.gradient_clipping is not None:
            # DTensor and plain gradients (tensor parallel) cannot share one foreach kernel
            for kind in (True, False):
                group = [p for p in self.trainable if isinstance(p, DTensor) is kind]
                if group:
                    torch.nn.utils.clip_grads_with_norm_(group, self.ds.gradient_clipping, norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        return {"loss": loss_sum, "grad_norm": float(norm), "lr": lr, "tokens": float(tokens)}

    def _token_scale(self, micro_batches: list[Batch]) -> float:
        """Factor turning a micro-batch's summed token loss into its share of the step's loss:
        the mean over every scored token of the global batch (all micro-batches, all data-
        parallel ranks), times ``dp`` because gradient reduction averages over the ranks. With
        a prefix objective rows score different numbers of tokens, and a mean of per-rank means
        would weight tokens by which rank read them."""
        local = sum(b.tokens for b in micro_batches)
        scored = all_sum([float(local)], self.runtime)[0] / self.dims.tp  # tp ranks share rows
        return self.dp / max(scored, 1.0)

    def _pipeline_step(self, batch: Batch) -> float:
        losses: list[torch.Tensor] = []
        with self._autocast():
            if self.stage_first:
                self.schedule.step(batch.inputs, target=batch.targets if self.stage_last
                                   else None, losses=losses)
            elif self.stage_last:
                self.schedule.step(target=batch.targets, losses=losses)
            else:
                self.schedule.step()
        local = float(torch.stack(losses).mean()) if losses else 0.0
        return all_sum([local], self.runtime)[0]  # only the last stage has a loss

    # -- evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over the first ``eval_batches x batch_size`` windows per data-parallel
        rank (the same windows every time), reduced over ranks."""
        if self.val is None:
            return {}
        bs = self.cfg.batch_size
        per_rank = min(len(self.val) // self.dp, self.cfg.eval_batches * bs)
        if per_rank == 0:
            raise ValueError("the validation split is shorter than one sequence per rank")
        self.model.eval()
        nats, count = 0.0, 0.0
        for start in range(0, per_rank, bs):
            idx = [i * self.dp + self.dp_rank for i in range(start, min(per_rank, start + bs))]
            window = torch.from_numpy(np.stack([self.val[i] for i in idx]).astype(np.int64))
            batch = self._batch(window, [(EVAL_KEY, i) for i in idx])  # same at every eval
            if self.schedule is not None:
                losses: list[torch.Tensor] = []
                if self.stage_first:
                    self.schedule.eval(batch.inputs, target=batch.targets if self.stage_last
                                       else None, losses=losses)
                else:
                    self.schedule.eval(target=batch.targets, losses=losses)
                if losses:
                    nats += float(torch.stack(losses).mean()) * batch.tokens
                    count += batch.tokens
                continue
            with self._autocast():
                nats += float(self.loss_fn(self.model, batch, "sum"))
            count += batch.tokens
        self.model.train()
        nats, count = all_sum([nats, count], self.runtime)  # tensor-parallel copies cancel out
        loss = nats / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    # -- reporting ------------------------------------------------------------------------------

    def memory(self) -> dict[str, float]:
        """Per-rank MiB of parameters, gradients and optimizer state (this rank's shards at
        rest), the parameters held between forward and backward (gathered ones under ZeRO-2),
        and peak memory, gathered to every rank as ``memory/rank<R>/<kind>_mb``."""
        local = getattr(self.optimizer, "optim", self.optimizer)
        opt = local_bytes(v for s in local.state.values() for v in s.values()
                          if torch.is_tensor(v))
        if self.runtime.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.runtime.device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        mine = [local_bytes(iter(self.params)) / MiB,
                local_bytes(p.grad for p in self.params) / MiB, opt / MiB,
                self._live_params / MiB, peak / MiB]
        kinds = ("params", "grads", "optimizer", "params_in_step", "peak")
        slots = [0.0] * (len(kinds) * self.runtime.world)
        slots[self.runtime.rank * len(kinds):(self.runtime.rank + 1) * len(kinds)] = mine
        every = all_sum(slots, self.runtime)
        return {f"memory/rank{r}/{k}_mb": every[r * len(kinds) + i]
                for r in range(self.runtime.world) for i, k in enumerate(kinds)}

    def _report(self, values: Mapping[str, float]) -> None:
        if self.log is not None:
            self.log(self.step, values)

    # -- the loop -------------------------------------------------------------------------------

    def fit(self, on_step: Callable[[int], None] | None = None) -> TrainResult:
        cfg = self.cfg
        start, window_tokens, timed = time.perf_counter(), 0.0, 0.0
        fpt = flops_per_token(self.model_cfg, self.n_params, self.seq_len)
        batches = iter(self.loader)
        train_loss, val_loss, last_saved = float("nan"), float("nan"), None
        self.model.train()
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            out = self.train_step(batches)
            dt = time.perf_counter() - t0
            self.tokens_seen += int(out["tokens"] * self.dp)
            window_tokens += out["tokens"] * self.dp
            timed += dt
            step = self.step  # steps done
            if step % cfg.log_every == 0 or step in (cfg.steps, 1):
                loss, = all_sum([out["loss"] / self.dp / self.dims.tp], self.runtime) \
                    if self.schedule is None else [out["loss"]]
                train_loss = loss
                tps = window_tokens / timed
                values = {"train/loss": loss, "train/lr": out["lr"],
                          "train/grad_norm": out["grad_norm"], "train/tokens_per_s": tps,
                          "train/tokens_seen": float(self.tokens_seen)}
                if cfg.peak_flops:
                    values["train/mfu"] = tps / self.runtime.world * fpt / cfg.peak_flops
                if self.scaler is not None:
                    values["train/loss_scale"] = float(self.scaler.get_scale())
                values |= self.memory()
                self._report(values)
                window_tokens, timed = 0.0, 0.0
            if step % cfg.eval_every == 0 or step == cfg.steps:
                metrics = self.evaluate()
                if metrics:
                    val_loss = metrics["loss"]
                    self._report({f"val/{k}": v for k, v in metrics.items()})
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                last_saved = self.save()
                self._report({"checkpoint/step": float(step)})
            if on_step is not None:
                on_step(step)
        if last_saved is None and self.resumed_from == self.step:
            last_saved = self._restored  # resumed a finished run: nothing new to save
        checkpoint = last_saved if last_saved is not None and last_saved.name.endswith(
            f"{self.step:07d}") else self.save()
        model_path = self.out_dir / "model.pt"
        if self.runtime.main:
            export_checkpoint(checkpoint, self.model_cfg, model_path)
        if self.runtime.distributed:
            dist.barrier()
        seconds = time.perf_counter() - start
        return TrainResult(steps=self.step, tokens_seen=self.tokens_seen,
                           train_loss=train_loss, val_loss=val_loss, checkpoint=checkpoint,
                           model_path=model_path, seconds=seconds,
                           tokens_per_s=self.tokens_seen / seconds if seconds else 0.0,
                           resumed_from=self.resumed_from)
