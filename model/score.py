"""Log-likelihood of continuations given contexts: the scoring rule of multiple-choice
benchmarks (lm-evaluation-harness style) and of the bias probe.

Requests are sorted longest first and batched with right padding; a decoder's causal attention
means padding after a row never changes that row's scores, so the results do not depend on the
batch size (up to float summation order). Contexts longer than the block lose tokens on the
left, never the continuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Request:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Scored:
    logprob: float  # sum over the continuation's tokens, natural log
    greedy: bool  # every continuation token is the argmax
    tokens: int


def _decoder_rows(req: Request, block: int) -> tuple[list[int], int]:
    """(input tokens, index of the first scored position) for a decoder."""
    if not req.continuation:
        raise ValueError("a request needs at least one continuation token")
    if len(req.continuation) > block:
        raise ValueError(f"continuation of {len(req.continuation)} tokens exceeds block {block}")
    seq = (list(req.context) + list(req.continuation))[-(block + 1):]
    if len(seq) == len(req.continuation):  # no context: nothing to predict the first token from
        raise ValueError("a request needs a context of at least one token (e.g. end-of-text)")
    return seq[:-1], len(seq) - 1 - len(req.continuation)


@torch.no_grad()
def loglikelihood(model: nn.Module, requests: Sequence[Request], *, batch_size: int = 16,
                  pad: int = 0, decoder_start: int | None = None) -> list[Scored]:
    """Score every request; ``decoder_start`` (an encoder-decoder's first decoder input)
    defaults to ``pad`` as in training."""
    cfg = model.cfg  # type: ignore[union-attr]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(requests)),
                   key=lambda i: -(len(requests[i].context) + len(requests[i].continuation)))
    out: list[Scored | None] = [None] * len(requests)
    try:
        for b in range(0, len(order), batch_size):
            chunk = [requests[i] for i in order[b:b + batch_size]]
            if cfg.arch == "encoder_decoder":
                results = _score_encoder_decoder(model, chunk, cfg.block_size, pad,
                                                 pad if decoder_start is None else decoder_start,
                                                 device)
            else:
                results = _score_decoder(model, chunk, cfg.block_size, pad,
                                         cfg.arch == "prefix", device)
            for i, r in zip(order[b:b + batch_size], results, strict=True):
                out[i] = r
    finally:
        model.train(was_training)
    return [r for r in out if r is not None]


def _gather(logits: torch.Tensor, rows: list[tuple[int, list[int]]]) -> list[Scored]:
    """Continuation scores from (B, T, V) logits; rows: (first scored position, tokens)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    out = []
    for r, (first, cont) in enumerate(rows):
        span = logp[r, first:first + len(cont)]
        target = torch.tensor(cont, device=logits.device)
        picked = span.gather(1, target[:, None]).squeeze(1)
        out.append(Scored(float(picked.sum()), bool((span.argmax(-1) == target).all()),
                          len(cont)))
    return out


def _score_decoder(model: nn.Module, chunk: list[Request], block: int, pad: int,
                   prefix: bool, device: torch.device) -> list[Scored]:
    rows = [_decoder_rows(r, block) for r in chunk]
    width = max(len(seq) for seq, _ in rows)
    inputs = torch.full((len(rows), width), pad, dtype=torch.long)
    for r, (seq, _) in enumerate(rows):
        inputs[r, :len(seq)] = torch.tensor(seq)
    # a prefix decoder reads the context bidirectionally (its training prefix)
    prefix_len = torch.tensor([first + 1 for _, first in rows]) if prefix else None
    logits = model(inputs.to(device), prefix_len.to(device) if prefix_len is not None else None)
    return _gather(logits, [(first, list(r.continuation)) for (_, first), r
                            in zip(rows, chunk, strict=True)])


def _score_encoder_decoder(model: nn.Module, chunk: list[Request], block: int, pad: int,
                           start: int, device: torch.device) -> list[Scored]:
    srcs = [list(r.context)[-block:] or [pad] for r in chunk]
    tgts = [[start, *r.continuation[:-1]] for r in chunk]
    if max(len(t) for t in tgts) > block:
        raise ValueError(f"a continuation exceeds block {block}")
    s_width, t_width = max(map(len, srcs)), max(map(len, tgts))
    src = torch.full((len(chunk), s_width), pad, dtype=torch.long)
    mask = torch.zeros((len(chunk), s_width), dtype=torch.bool)
    tgt = torch.full((len(chunk), t_width), pad, dtype=torch.long)
    for r, (s, t) in enumerate(zip(srcs, tgts, strict=True)):
        src[r, :len(s)], mask[r, :len(s)], tgt[r, :len(t)] = torch.tensor(s), True, torch.tensor(t)
    logits = model(src.to(device), tgt.to(device), mask.to(device))
    return _gather(logits, [(0, list(r.continuation)) for r in chunk])
