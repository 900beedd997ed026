"""Text generation for all three architectures and every fine-tuning method: greedy,
temperature, top-k and nucleus (top-p) sampling.

:func:`generate` and :func:`generate_batch` run on the paged-KV engine (``model.engine``:
continuous batching, each row generating what it would alone); ``use_cache=False`` recomputes
the whole sequence through the model's training forward for every new token, the reference the
engine is tested against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from lmforge.model.engine import generate_many
from lmforge.model.sampling import Sampling, budget, pick
from torch import nn

__all__ = ["Sampling", "generate", "generate_batch", "pick"]


@torch.no_grad()
def generate(model: nn.Module, prompt: list[int], sampling: Sampling, *,
             use_cache: bool = True, decoder_start: int = 0) -> list[int]:
    """New token ids after ``prompt`` (a stop token included, last). ``decoder_start``: the token an
    encoder-decoder's decoder begins from (the padding token in training)."""
    if use_cache:
        return generate_batch(model, [prompt], sampling, decoder_start=decoder_start)[0]
    with _eval(model):
        return _uncached(model, budget(model, prompt, sampling), sampling, decoder_start)


@torch.no_grad()
def generate_batch(model: nn.Module, prompts: Sequence[list[int]], sampling: Sampling, *,
                   seeds: Sequence[int] | None = None, decoder_start: int = 0,
                   max_batch: int = 32) -> list[list[int]]:
    """:func:`generate` for every prompt through one engine; ``seeds`` (one per prompt, default
    ``sampling.seed``) make each row's draws its own, whatever the batch."""
    with _eval(model):
        return generate_many(model, list(prompts), sampling,
                             seeds=list(seeds) if seeds is not None else None,
                             max_batch=max_batch, decoder_start=decoder_start)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _uncached(model: nn.Module, prompt: list[int], sampling: Sampling, pad: int) -> list[int]:
    """The reference: the whole sequence through the model for every new token."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(sampling.seed)
    encoder_decoder = getattr(model.cfg, "arch", "causal") == "encoder_decoder"  # type: ignore
    src = torch.tensor([prompt], device=device)
    memory = model.encode(src) if encoder_decoder else None  # type: ignore[operator]
    prefix = torch.tensor([len(prompt)], device=device) \
        if model.cfg.arch == "prefix" else None  # type: ignore[union-attr]
    tokens = torch.tensor([[pad]], device=device) if encoder_decoder else src
    out: list[int] = []
    while len(out) < sampling.max_new_tokens and (not out or out[-1] not in sampling.stop):
        logits = model.decode(tokens, memory)[0, -1] if encoder_decoder \
            else model(tokens, prefix)[0, -1]  # type: ignore[operator]
        out.append(pick(logits, sampling, generator))
        tokens = torch.cat([tokens, torch.tensor([[out[-1]]], device=device)], dim=1)
    return out
