"""Training objectives (survey §2.3), kept outside the models.

* ``lm``: next-token prediction. For a prefix decoder, each row gets a random prefix that is
  read bidirectionally; the loss covers the tokens after it (PaLM/GLM prefix-LM).
* ``denoise``: T5 span corruption (Raffel et al. 2020, §3.1.4): 15% of the tokens, in spans of
  mean length 3, are replaced by sentinels; the target is each sentinel followed by its span.
  Fixed input/target lengths follow from the window length, so batches need no padding.
  An encoder-decoder reads the corrupted input with its encoder; a prefix decoder reads it as
  its prefix and predicts the target after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

IGNORE = -100


class ObjectiveConfig(BaseModel):
    """What the model learns to predict."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["lm", "denoise", "sft"] = Field(
        "lm", description="next token, span corruption, or (fine-tuning) the targets of "
        "prepared instruction rows (tasks.sft)")
    noise_density: float = Field(0.15, gt=0, lt=1, description="share of tokens corrupted")
    mean_span: float = Field(3.0, ge=1, description="mean length of a corrupted span")
    max_prefix: float = Field(0.5, gt=0, lt=1, description="prefix-LM: longest prefix as a "
                              "share of the sequence")


@dataclass(frozen=True)
class SpecialTokens:
    pad: int
    eot: int
    sentinels: tuple[int, ...]


@dataclass
class Batch:
    """Model inputs and the targets the loss is taken against (IGNORE where not scored)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    decoder_inputs: torch.Tensor | None = None
    prefix_len: torch.Tensor | None = None
    segments: torch.Tensor | None = None  # packed rows: sequence id per token (-1 padding)
    bidirectional: torch.Tensor | None = None  # prefix decoder SFT: prompt tokens
    src_mask: torch.Tensor | None = None  # encoder-decoder SFT: real source tokens
    pairs: int = 0  # preference rows: the first `pairs` rows chosen, the next ones rejected

    def to(self, device: torch.device) -> Batch:
        move = (lambda t: t.to(device, non_blocking=True) if t is not None else None)  # noqa: E731
        return Batch(*(move(getattr(self, f)) for f in (
            "inputs", "targets", "decoder_inputs", "prefix_len", "segments", "bidirectional",
            "src_mask")), pairs=self.pairs)

    @property
    def tokens(self) -> int:
        """What the loss is a sum over: scored tokens, or pairs for preference batches."""
        return self.pairs or int((self.targets != IGNORE).sum())


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy; logits (B, T, V), targets (B, T) with IGNORE where not scored."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                           ignore_index=IGNORE, reduction=reduction)


def span_mask(length: int, density: float, mean_span: float, rng: np.random.Generator
              ) -> np.ndarray:
    """Boolean noise mask with exactly round(length * density) noise tokens in
    round(noise / mean_span) spans, alternating with non-noise runs (T5's random segmentation)."""
    noise = max(1, min(length - 1, round(length * density)))
    spans = max(1, min(noise, round(noise / mean_span)))

    def segment(total: int, parts: int) -> np.ndarray:
        cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False)) \
            if parts > 1 else np.array([], dtype=int)
        return np.diff(np.concatenate([[0], cuts, [total]]))

    noise_runs, keep_runs = segment(noise, spans), segment(length - noise, spans)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for keep, drop in zip(keep_runs, noise_runs, strict=True):
        pos += keep
        mask[pos:pos + drop] = True
        pos += drop
    return mask


def corrupt(row: np.ndarray, mask: np.ndarray, sentinels: tuple[int, ...], eot: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(input with a sentinel per span, target of sentinel + span per span, then eot)."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    span_id = np.cumsum(starts) - 1
    if span_id.max() >= len(sentinels):
        raise ValueError(f"{span_id.max() + 1} spans but only {len(sentinels)} sentinel "
                         "tokens; train the tokenizer with more sentinels or lower noise")
    sentinel = np.array(sentinels, dtype=row.dtype)[np.clip(span_id, 0, None)]
    inputs = np.where(starts, sentinel, row)[~mask | starts]
    noise = row[mask]
    span_starts = np.flatnonzero(starts[mask])  # where each span begins among the noise
    targets = np.insert(noise, span_starts, sentinel[starts])
    return inputs, np.concatenate([targets, np.array([eot], dtype=row.dtype)])


def denoise_lengths(length: int, objective: ObjectiveConfig) -> tuple[int, int]:
    """(input, target) lengths span corruption produces from ``length`` tokens."""
    noise = max(1, min(length - 1, round(length * objective.noise_density)))
    spans = max(1, min(noise, round(noise / objective.mean_span)))
    return length - noise + spans, noise + spans + 1


def make_batch(window: torch.Tensor, arch: str, objective: ObjectiveConfig,
               special: SpecialTokens | None,
               rng: np.random.Generator | Sequence[np.random.Generator]) -> Batch:
    """Turn (B, L+1) token windows into the batch the architecture and objective need.
    ``rng``: one generator for the batch, or one per row (the trainer keys each row's by the
    window's place in the data order, so its prefix or corruption does not depend on which
    rank reads it)."""
    rngs = list(rng) if isinstance(rng, Sequence) else [rng] * window.shape[0]
    if len(rngs) != window.shape[0]:
        raise ValueError(f"{len(rngs)} random generators for {window.shape[0]} rows")
    if objective.kind == "sft":
        raise ValueError("objective 'sft' reads prepared instruction rows (tasks.sft), not "
                         "token windows: fine-tune with `lmforge finetune`")
    if objective.kind == "lm":
        inputs, targets = window[:, :-1], window[:, 1:].clone()
        if arch != "prefix":
            return Batch(inputs, targets)
        length = inputs.shape[1]
        high = max(2, int(length * objective.max_prefix))
        prefix = torch.tensor([int(r.integers(1, high)) for r in rngs], dtype=torch.long)
        positions = torch.arange(length)[None, :]
        targets[positions + 1 < prefix[:, None]] = IGNORE  # predictions inside the prefix
        return Batch(inputs, targets, prefix_len=prefix)
    if special is None:
        raise ValueError("the denoise objective needs the tokenizer's sentinel tokens")
    rows = window[:, :-1].numpy()
    pairs = [corrupt(r, span_mask(len(r), objective.noise_density, objective.mean_span, g),
                     special.sentinels, special.eot) for r, g in zip(rows, rngs, strict=True)]
    src = torch.from_numpy(np.stack([p[0] for p in pairs]).astype(np.int64))
    tgt = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    if arch == "encoder_decoder":
        start = torch.full((tgt.shape[0], 1), special.pad, dtype=torch.long)
        return Batch(src, tgt, decoder_inputs=torch.cat([start, tgt[:, :-1]], dim=1))
    # prefix decoder: [corrupted input | target]; predict the target after the prefix
    seq = torch.cat([src, tgt], dim=1)
    targets = torch.full_like(seq, IGNORE)
    targets[:, src.shape[1] - 1:-1] = tgt
    prefix = torch.full((seq.shape[0],), src.shape[1], dtype=torch.long)
    return Batch(seq, targets, prefix_len=prefix)


def sft_batch(rows: torch.Tensor, arch: str) -> Batch:
    """The batch of (B, 4, L) fine-tuning rows (``tasks.sft``): decoders get inputs, targets,
    segment ids and (prefix decoder) the prompt flags; an encoder-decoder gets source, decoder
    inputs, targets and the source mask."""
    rows = rows.long()
    if arch == "encoder_decoder":
        return Batch(rows[:, 0], rows[:, 2], decoder_inputs=rows[:, 1],
                     src_mask=rows[:, 3].bool())
    return Batch(rows[:, 0], rows[:, 1], segments=rows[:, 2],
                 bidirectional=rows[:, 3].bool() if arch == "prefix" else None)


def pair_batch(rows: torch.Tensor, arch: str) -> Batch:
    """(B, 2, 4, L) preference rows (``tasks.preference``) as one batch of 2B fine-tuning rows:
    the chosen examples first, then the rejected ones."""
    batch = sft_batch(rows.transpose(0, 1).reshape(-1, *rows.shape[2:]), arch)
    batch.pairs = rows.shape[0]
    return batch


def batch_output(model: nn.Module, batch: Batch, features: bool = False) -> torch.Tensor:
    """The model's logits (or final hidden states) for the batch, whatever the architecture."""
    kw = {"features": True} if features else {}
    if batch.decoder_inputs is not None:
        return model(batch.inputs, batch.decoder_inputs, batch.src_mask, **kw)
    if batch.segments is not None:
        return model(batch.inputs, segments=batch.segments, bidirectional=batch.bidirectional,
                     **kw)
    if batch.prefix_len is not None:
        return model(batch.inputs, prefix_len=batch.prefix_len, **kw)
    return model(batch.inputs, **kw)


def forward_loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    """Loss over the scored tokens (mean, or sum for evaluation), whatever the architecture."""
    return lm_loss(batch_output(model, batch), batch.targets, reduction)
