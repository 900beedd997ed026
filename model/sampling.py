"""How the next token is chosen (greedy, temperature, top-k, nucleus) and how much of a prompt
fits in the block; shared by the engine (``model.engine``) and the reference loop
(``model.generate``)."""

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


def virtual_tokens(model: nn.Module) -> int:
    """P-tuning's virtual tokens ahead of the input (of the encoder, for an encoder-decoder)."""
    prompt = getattr(model, "prompt", None)
    return int(prompt.length) if prompt is not None else 0  # type: ignore[arg-type]


def budget(model: nn.Module, prompt: list[int], sampling: Sampling) -> list[int]:
    """The prompt's tail that leaves room for the new tokens (and virtual tokens) inside the
    block."""
    block = int(model.cfg.block_size)  # type: ignore[union-attr]
    room = block - sampling.max_new_tokens - virtual_tokens(model)
    if room < 1:
        raise ValueError(f"max_new_tokens={sampling.max_new_tokens} leaves no room for a "
                         f"prompt in block_size={block}")
    if not prompt:
        raise ValueError("generation needs a non-empty prompt")
    return prompt[-room:]
