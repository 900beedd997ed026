"""Held-out metrics: loss, perplexity and bits per byte, overall and per group (source)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from lmforge.model.data import PackedSequences
from lmforge.model.objectives import ObjectiveConfig, SpecialTokens, forward_loss, make_batch
from torch import nn


@dataclass(frozen=True)
class Groups:
    """Labels of stream positions: segment ``k`` ends (exclusive) at ``ends[k]`` and has label
    ``labels[k]`` (an index into ``names``); UTF-8 bytes per token of each name."""

    ends: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    bytes_per_token: dict[str, float]

    def label_of(self, positions: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.ends, positions, side="right")
        return self.labels[np.minimum(k, len(self.labels) - 1)]


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: PackedSequences, *, batch_size: int = 16,
                max_batches: int | None = None, text_bytes: int | None = None,
                device: str = "cpu", special: SpecialTokens | None = None,
                seed: int = 0, groups: Groups | None = None) -> dict[str, float]:
    """Mean loss over every window (in order), perplexity, and bits per byte.

    Decoders (causal and prefix) are scored as left-to-right language models on every token;
    an encoder-decoder on span-corruption targets (with fixed draws, so numbers compare).
    Bits per byte scales the summed next-token loss by the UTF-8 bytes the evaluated tokens
    stand for (``text_bytes`` x share of the stream evaluated), so it compares across
    tokenizers. ``groups`` (decoders only) splits the sums by the label of each target
    token's stream position, e.g. its source: ``<label>/loss``, ``<label>/tokens``.
    """
    arch = getattr(getattr(model, "cfg", None), "arch", "causal")
    lm = arch != "encoder_decoder"
    objective = ObjectiveConfig(kind="lm" if lm else "denoise")
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    total_nats, total_tokens = 0.0, 0
    by_label = np.zeros((len(groups.names) if groups else 0, 2))  # nats, tokens
    n = len(data) if max_batches is None else min(len(data), max_batches * batch_size)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        rows = torch.from_numpy(np.stack([data[i].astype("int64") for i in range(start, stop)]))
        batch = make_batch(rows, "causal" if lm else arch, objective, special, rng)
        batch = batch.to(torch.device(device))
        if groups is not None and lm:
            nats = forward_loss(model, batch, reduction="none").view(batch.targets.shape)
            # window i predicts stream positions i*L+1 .. i*L+L
            L = data.seq_len
            positions = (np.arange(start, stop)[:, None] * L + np.arange(1, L + 1)[None, :])
            labels = groups.label_of(positions.ravel())
            np.add.at(by_label[:, 0], labels, nats.double().cpu().numpy().ravel())
            np.add.at(by_label[:, 1], labels, 1)
            total_nats += float(nats.double().sum())
        else:
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
    for k, name in enumerate(groups.names if groups and lm else []):
        nats, tokens = by_label[k]
        if tokens:
            out[f"{name}/loss"] = nats / tokens
            out[f"{name}/perplexity"] = math.exp(min(nats / tokens, 50.0))
            out[f"{name}/tokens"] = float(tokens)
            if groups.bytes_per_token.get(name):
                out[f"{name}/bits_per_byte"] = nats / math.log(2) / (
                    tokens * groups.bytes_per_token[name])
    return out
