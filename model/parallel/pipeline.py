"""Pipeline parallelism with ``torch.distributed.pipelining``: the decoder's blocks are split
into consecutive stages, one per rank, and micro-batches flow through them on a GPipe or 1F1B
schedule. Supported for the causal decoder with the LM objective."""

from __future__ import annotations

import torch
from lmforge.model.transformer import DecoderLM
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe


class StageModule(nn.Module):
    """One stage of a DecoderLM: embeddings on the first, head on the last."""

    def __init__(self, model: DecoderLM, start: int, stop: int, first: bool,
                 last: bool) -> None:
        super().__init__()
        self.embed = model.embed if first else None
        keep = {str(i) for i in range(start, stop)}
        self.layers = nn.ModuleDict({k: v for k, v in model.layers.items() if k in keep})
        self.ln_f = model.ln_f if last else None
        self.lm_head = model.lm_head if last else None
        self.rope = model.embed.rope()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        for block in self.layers.values():
            x = block(x, causal=True, rope=self.rope)
        if self.lm_head is not None and self.ln_f is not None:
            return self.lm_head(self.ln_f(x))
        return x


def split_stages(model: DecoderLM, stage: int, stages: int) -> StageModule:
    n = model.cfg.n_layer
    if n < stages:
        raise ValueError(f"{n} layers cannot fill {stages} pipeline stages")
    bounds = [n * s // stages for s in range(stages + 1)]
    return StageModule(model, bounds[stage], bounds[stage + 1], stage == 0, stage == stages - 1)


def build_schedule(module: StageModule, *, stage: int, stages: int, device: torch.device,
                   group: object, microbatches: int, schedule: str,
                   loss_fn: object) -> object:
    pipe_stage = PipelineStage(module, stage, stages, device, group=group)
    cls = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
    return cls(pipe_stage, n_microbatches=microbatches, loss_fn=loss_fn)
