"""Text generation with a key/value cache: greedy, temperature, top-k and nucleus (top-p)
sampling, for all three architectures.

Decoders prefill the prompt once (a prefix decoder attends to the whole prompt both ways, as in
training) and then feed one token per step; an encoder-decoder encodes the prompt once and
decodes from the padding token, caching the cross-attention keys too. ``use_cache=False``
recomputes the whole sequence every step: the reference the cache is tested against.

:func:`generate_batch` runs many prompts at once: prompts are right-padded into one batch, each
row keeps its own positions (``start`` per row) and the padding columns are masked as keys, so a
row generates what it would alone; finished rows leave the batch (and the cache) at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen; ``temperature == 0`` is greedy."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0  # 0 = whole vocabulary
    top_p: float = 1.0  # nucleus: smallest set of tokens with this much probability
    stop: frozenset[int] = field(default_factory=frozenset)  # ids that end it (kept)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("Sampling needs temperature >= 0, 0 < top_p <= 1, top_k >= 0")


def pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """The next token from (vocab,) logits."""
    if sampling.temperature == 0:
        return int(logits.argmax())
    logits = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        mass = torch.softmax(ordered, dim=-1).cumsum(-1)
        drop = mass - torch.softmax(ordered, dim=-1) > sampling.top_p  # keep the first crossing
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop),
                                    float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _budget(model: nn.Module, prompt: list[int], sampling: Sampling) -> list[int]:
    """The prompt's tail that leaves room for the new tokens inside the block."""
    block = int(model.cfg.block_size)  # type: ignore[union-attr]
    room = block - sampling.max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens={sampling.max_new_tokens} leaves no room for a "
                         f"prompt in block_size={block}")
    if not prompt:
        raise ValueError("generation needs a non-empty prompt")
    return prompt[-room:]


@torch.no_grad()
def generate(model: nn.Module, prompt: list[int], sampling: Sampling, *,
             use_cache: bool = True, decoder_start: int = 0) -> list[int]:
    """New token ids after ``prompt`` (a stop token included, last). ``decoder_start``: the token an
    encoder-decoder's decoder begins from (the padding token in training)."""
    if use_cache:
        return generate_batch(model, [prompt], sampling, decoder_start=decoder_start)[0]
    with _eval(model):
        return _uncached(model, _budget(model, prompt, sampling), sampling, decoder_start)


@torch.no_grad()
def generate_batch(model: nn.Module, prompts: Sequence[list[int]], sampling: Sampling, *,
                   seeds: Sequence[int] | None = None, decoder_start: int = 0
                   ) -> list[list[int]]:
    """:func:`generate` for every prompt, as one batch; ``seeds`` (one per prompt, default
    ``sampling.seed``) make each row's draws its own, whatever the batch."""
    if not prompts:
        return []
    seeds = list(seeds) if seeds is not None else [sampling.seed] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    with _eval(model):
        device = next(model.parameters()).device
        budgeted = [_budget(model, p, sampling) for p in prompts]
        rows: _Rows = (_EncoderDecoderRows(model, budgeted, device, decoder_start)
                       if getattr(model.cfg, "arch", "causal") == "encoder_decoder"  # type: ignore
                       else _DecoderRows(model, budgeted, device))
        outs: list[list[int]] = [[] for _ in prompts]
        active = list(range(len(prompts)))
        logits = rows.logits
        while True:
            if sampling.temperature == 0:
                chosen = logits.argmax(-1).tolist()
            else:
                chosen = [pick(logits[j], sampling, generators[r]) for j, r in enumerate(active)]
            keep = []
            for r, token in zip(active, chosen, strict=True):
                outs[r].append(token)
                keep.append(token not in sampling.stop
                            and len(outs[r]) < sampling.max_new_tokens)
            if not any(keep):
                return outs
            active = [r for r, k in zip(active, keep, strict=True) if k]
            logits = rows.step(torch.tensor(chosen, device=device),
                               torch.tensor(keep, device=device))


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _right_padded(prompts: list[list[int]], device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, W) tokens padded on the right with 0, the (B,) lengths and the (B, W) mask of real
    tokens (padding is never attended to)."""
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    tokens = torch.zeros(len(prompts), int(lengths.max()), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, :len(p)] = torch.tensor(p, device=device)
    real = torch.arange(tokens.shape[1], device=device)[None, :] < lengths[:, None]
    return tokens, lengths, real


def _select(cache: list[dict], keep: torch.Tensor) -> None:
    """Drop finished rows from every cached key/value tensor, in place."""
    for layer in cache:
        for kv in layer.values():
            for name in ("k", "v"):
                kv[name] = kv[name][keep]


class _Rows:
    """The batch being generated: ``logits`` (rows, vocab) for each row's next token;
    ``step(chosen, keep)`` feeds the chosen tokens of the rows to keep and returns theirs."""

    logits: torch.Tensor

    def step(self, chosen: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _DecoderRows(_Rows):
    def __init__(self, model: nn.Module, prompts: list[list[int]], device: torch.device
                 ) -> None:
        self.model = model
        tokens, lengths, real = _right_padded(prompts, device)
        prefix = lengths if model.cfg.arch == "prefix" else None  # type: ignore[union-attr]
        self.cache: list[dict] = [{} for _ in model.layers]  # type: ignore[union-attr]
        logits = model(tokens, prefix, cache=self.cache)
        self.logits = logits[torch.arange(len(prompts), device=device), lengths - 1]
        self.keys = real  # cache columns holding real tokens: prompt, then all generated
        self.position = lengths  # each row's next position

    def step(self, chosen: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if not bool(keep.all()):
            _select(self.cache, keep)
            self.keys, self.position = self.keys[keep], self.position[keep]
        self.keys = torch.cat([self.keys, self.keys.new_ones(len(self.keys), 1)], dim=1)
        logits = self.model(chosen[keep][:, None], cache=self.cache, start=self.position,
                            keys=self.keys)[:, -1]
        self.position = self.position + 1
        return logits


class _EncoderDecoderRows(_Rows):
    def __init__(self, model: nn.Module, prompts: list[list[int]], device: torch.device,
                 decoder_start: int) -> None:
        self.model = model
        src, _, self.src_mask = _right_padded(prompts, device)
        self.memory = model.encode(src, self.src_mask)  # type: ignore[operator]
        start = torch.full((len(prompts), 1), decoder_start, device=device)
        self.cache: list[dict] = [{} for _ in model.layers]  # type: ignore[union-attr]
        self.logits = model.decode(start, self.memory, self.src_mask,  # type: ignore[operator]
                                   cache=self.cache)[:, -1]
        self.position = 1  # decoder rows are aligned: no padding, one position for all

    def step(self, chosen: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if not bool(keep.all()):
            _select(self.cache, keep)
            self.memory, self.src_mask = self.memory[keep], self.src_mask[keep]
        logits = self.model.decode(chosen[keep][:, None], self.memory,  # type: ignore[operator]
                                   self.src_mask, cache=self.cache, start=self.position)[:, -1]
        self.position += 1
        return logits


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
