"""Held-out metrics: loss, perplexity and bits per byte."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.data import PackedSequences
from model.objectives import lm_loss


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: PackedSequences, *, batch_size: int = 16,
                max_batches: int | None = None, text_bytes: int | None = None,
                device: str = "cpu") -> dict[str, float]:
    """Mean next-token loss over every window (in order), perplexity, and bits per byte.

    Bits per byte scales the summed loss by the UTF-8 bytes the evaluated tokens stand for
    (``text_bytes`` × share of the stream evaluated), so it compares across tokenizers.
    """
    was_training = model.training
    model.eval()
    total_nats, total_tokens = 0.0, 0
    n = len(data) if max_batches is None else min(len(data), max_batches * batch_size)
    for start in range(0, n, batch_size):
        rows = torch.stack([torch.from_numpy(data[i].astype("int64"))
                            for i in range(start, min(n, start + batch_size))]).to(device)
        logits = model(rows[:, :-1])
        total_nats += float(lm_loss(logits, rows[:, 1:], reduction="sum"))
        total_tokens += rows[:, 1:].numel()
    model.train(was_training)
    if total_tokens == 0:
        raise ValueError("no evaluation windows: the held-out split is shorter than one sequence")
    loss = total_nats / total_tokens
    out = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(total_tokens)}
    if text_bytes:
        stream_tokens = max(1, len(data.stream))
        out["bits_per_byte"] = total_nats / math.log(2) / (text_bytes * total_tokens
                                                           / stream_tokens)
    return out
