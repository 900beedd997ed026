"""Held-out metrics: loss, perplexity and bits per byte."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from model.data import PackedSequences
from model.objectives import ObjectiveConfig, SpecialTokens, forward_loss, make_batch


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: PackedSequences, *, batch_size: int = 16,
                max_batches: int | None = None, text_bytes: int | None = None,
                device: str = "cpu", special: SpecialTokens | None = None,
                seed: int = 0) -> dict[str, float]:
    """Mean loss over every window (in order), perplexity, and bits per byte.

    Decoders (causal and prefix) are scored as left-to-right language models on every token;
    an encoder-decoder on span-corruption targets (with fixed draws, so numbers compare).
    Bits per byte scales the summed next-token loss by the UTF-8 bytes the evaluated tokens
    stand for (``text_bytes`` x share of the stream evaluated), so it compares across
    tokenizers.
    """
    arch = getattr(getattr(model, "cfg", None), "arch", "causal")
    lm = arch != "encoder_decoder"
    objective = ObjectiveConfig(kind="lm" if lm else "denoise")
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    total_nats, total_tokens = 0.0, 0
    n = len(data) if max_batches is None else min(len(data), max_batches * batch_size)
    for start in range(0, n, batch_size):
        rows = torch.from_numpy(np.stack([data[i].astype("int64")
                                          for i in range(start, min(n, start + batch_size))]))
        batch = make_batch(rows, "causal" if lm else arch, objective, special, rng)
        batch = batch.to(torch.device(device))
        total_nats += float(forward_loss(model, batch, reduction="sum"))
        total_tokens += batch.tokens
    model.train(was_training)
    if total_tokens == 0:
        raise ValueError("no evaluation windows: the held-out split is shorter than one sequence")
    loss = total_nats / total_tokens
    out = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(total_tokens)}
    if text_bytes and lm:
        stream_tokens = max(1, len(data.stream))
        out["bits_per_byte"] = total_nats / math.log(2) / (text_bytes * total_tokens
                                                           / stream_tokens)
    return out
