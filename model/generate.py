"""Text generation with a key/value cache: greedy, temperature, top-k and nucleus (top-p)
sampling, for all three architectures.

Decoders prefill the prompt once (a prefix decoder attends to the whole prompt both ways, as in
training) and then feed one token per step; an encoder-decoder encodes the prompt once and
decodes from the padding token, caching the cross-attention keys too. ``use_cache=False``
recomputes the whole sequence every step: the reference the cache is tested against.
"""

from __future__ import annotations

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
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        prompt = _budget(model, prompt, sampling)
        generator = torch.Generator().manual_seed(sampling.seed)
        if getattr(model.cfg, "arch", "causal") == "encoder_decoder":  # type: ignore[union-attr]
            step = _encoder_decoder(model, prompt, device, use_cache, decoder_start)
        else:
            step = _decoder(model, prompt, device, use_cache)
        out: list[int] = []
        logits = next(step)
        for _ in range(sampling.max_new_tokens):
            token = pick(logits, sampling, generator)
            out.append(token)
            if token in sampling.stop or len(out) == sampling.max_new_tokens:
                break
            logits = step.send(token)
        return out
    finally:
        model.train(was_training)


def _decoder(model: nn.Module, prompt: list[int], device: torch.device, use_cache: bool):
    """Coroutine: yields next-token logits, receives the chosen token."""
    prefix = model.cfg.arch == "prefix"  # type: ignore[union-attr]
    tokens = torch.tensor([prompt], device=device)
    prefix_len = torch.tensor([len(prompt)], device=device) if prefix else None
    if not use_cache:
        while True:
            token = yield model(tokens, prefix_len)[0, -1]
            tokens = torch.cat([tokens, torch.tensor([[token]], device=device)], dim=1)
    cache: list[dict] = [{} for _ in model.layers]  # type: ignore[union-attr]
    logits = model(tokens, prefix_len, cache=cache)[0, -1]
    position = len(prompt)
    while True:
        token = yield logits
        logits = model(torch.tensor([[token]], device=device), cache=cache,
                       start=position)[0, -1]
        position += 1


def _encoder_decoder(model: nn.Module, prompt: list[int], device: torch.device,
                     use_cache: bool, pad: int):
    memory = model.encode(torch.tensor([prompt], device=device))  # type: ignore[operator]
    tokens = torch.tensor([[pad]], device=device)
    if not use_cache:
        while True:
            token = yield model.decode(tokens, memory)[0, -1]  # type: ignore[operator]
            tokens = torch.cat([tokens, torch.tensor([[token]], device=device)], dim=1)
    cache: list[dict] = [{} for _ in model.layers]  # type: ignore[union-attr]
    logits = model.decode(tokens, memory, cache=cache)[0, -1]  # type: ignore[operator]
    position = 1
    while True:
        token = yield logits
        logits = model.decode(torch.tensor([[token]], device=device), memory,  # type: ignore
                              cache=cache, start=position)[0, -1]
        position += 1
