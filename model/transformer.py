"""The three architectures of the survey (§2.2): causal decoder (GPT), prefix decoder
(GLM/PaLM prefix-LM) and encoder-decoder (T5). Layers live in ``ModuleDict``s keyed by index,
so parameter names survive checkpoints and pipeline splits; losses live in ``model.objectives``.
"""

from __future__ import annotations

import math

import torch
from lmforge.model.config import ModelConfig
from lmforge.model.layers import (
    Block,
    Start,
    last_position,
    positions,
    prefix_mask,
    rotary_tables,
    segment_mask,
    segment_positions,
    sinusoidal_table,
    with_virtual,
)
from torch import nn


class Embeddings(nn.Module):
    """Token embedding plus absolute positions (learned or sinusoidal); rotary positions are
    applied inside attention instead, from the tables kept here."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.position = cfg.position
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.position == "learned" else None
        self.register_buffer("table", sinusoidal_table(cfg.block_size, cfg.n_embd),
                             persistent=False)
        cos, sin = rotary_tables(cfg.block_size, cfg.head_size, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)

    def rope(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return (self.cos, self.sin) if self.position == "rotary" else None

    def forward(self, idx: torch.Tensor, start: Start = 0) -> torch.Tensor:
        x = self.tok(idx)  # (B, T, C)
        if self.position in ("learned", "sinusoidal"):
            where = positions(start, idx.shape[1], idx.device)  # (T,) or (B, T)
            x = x + (self.pos(where) if self.pos is not None else self.table[where].to(x.dtype))
        return self.drop(x)


def _init(model: nn.Module, n_layer: int) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
    for name, p in model.named_parameters():  # GPT-2: residual projections / sqrt(2 n_layer)
        if name.endswith(("proj.weight", "down.weight")):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


def _embeddings(model: nn.Module, cfg: ModelConfig) -> Embeddings:
    """The shared start of every architecture: its config and token/position embeddings."""
    if cfg.vocab_size <= 0:
        raise ValueError("ModelConfig.vocab_size must be set (from the tokenizer)")
    model.cfg = cfg
    return Embeddings(cfg)


def _head(model: nn.Module, cfg: ModelConfig, depth: int) -> None:
    """The shared end: final norm and LM head (tied to the token embedding when configured),
    then GPT-2 initialisation of everything over ``depth`` residual layers."""
    model.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
    model.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
    _init(model, depth)
    if cfg.tie_weights:
        model.lm_head.weight = model.embed.tok.weight


def _shift(start: Start, by: int) -> Start:
    return start + by if by else start


class DecoderLM(nn.Module):
    """Causal decoder; with ``arch='prefix'`` the first ``prefix_len`` tokens of each row attend
    to each other in both directions."""

    cfg: ModelConfig

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = _embeddings(self, cfg)
        self.layers = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_layer)})
        _head(self, cfg, cfg.n_layer)
        # P-tuning (model.finetune): a module returning (B, n, C) virtual token embeddings
        # placed ahead of the input, at positions 0..n-1
        self.prompt: nn.Module | None = None

    def forward(self, idx: torch.Tensor, prefix_len: torch.Tensor | None = None, *,
                start: Start = 0, segments: torch.Tensor | None = None,
                bidirectional: torch.Tensor | None = None, features: bool = False
                ) -> torch.Tensor:
        """Logits of every position (generation: ``model.engine``). ``segments`` (B, T): a
        packed row's sequence ids; each sequence then starts at position 0 and sees only itself
        (``bidirectional`` flags a prefix decoder's prompt tokens, which also see each other
        both ways). ``features``: the final normalised hidden states (B, T, C) instead of
        logits (what a reward head reads)."""
        B, T = idx.shape
        virtual = int(self.prompt.length) if self.prompt is not None else 0  # type: ignore
        if segments is not None:
            start = segment_positions(segments)
            mask = segment_mask(segments, bidirectional)
        else:
            mask = prefix_mask(prefix_len, T) if prefix_len is not None else None
        start = _shift(start, virtual)
        end = last_position(start, T)
        if self.cfg.block_size < end:
            raise ValueError(f"sequence length {end} exceeds block_size {self.cfg.block_size}")
        x = self.embed(idx, start)  # (B, T, C)
        if self.prompt is not None:  # the virtual tokens at 0..n-1
            x = torch.cat([self.prompt(B).to(x.dtype), x], dim=1)
            mask = with_virtual(mask, virtual, T, idx.device, rows=True)
            start = torch.cat([torch.arange(virtual, device=idx.device).expand(B, virtual),
                               positions(start, T, idx.device).expand(B, T)], dim=1)
        for block in self.layers.values():
            x = block(x, mask=mask, causal=True, rope=self.embed.rope(), start=start)
        h = self.ln_f(x[:, -T:] if x.shape[1] != T else x)
        return h if features else self.lm_head(h)  # (B, T, C) or (B, T, vocab)


class EncoderDecoderLM(nn.Module):
    """T5-style: a bidirectional encoder over the (corrupted) input, a causal decoder with
    cross-attention over the encoder's output. Embeddings are shared."""

    cfg: ModelConfig

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = _embeddings(self, cfg)
        self.encoder = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_encoder_layer)})
        self.ln_enc = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.layers = nn.ModuleDict({str(i): Block(cfg, cross=True)
                                     for i in range(cfg.n_layer)})
        _head(self, cfg, cfg.n_layer + cfg.n_encoder_layer)
        self.prompt: nn.Module | None = None  # P-tuning: virtual tokens ahead of the input

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder output; P-tuning's virtual tokens, when set, lead it (and every mask
        of its columns, see ``decode``)."""
        virtual = int(self.prompt.length) if self.prompt is not None else 0  # type: ignore
        src_mask = _lead_keys(src_mask, virtual + src.shape[1]) if virtual else src_mask
        keys = src_mask[:, None, None, :] if src_mask is not None else None  # (B, 1, 1, S)
        h = self.embed(src, virtual)  # (B, S, C)
        if self.prompt is not None:
            h = torch.cat([self.prompt(src.shape[0]).to(h.dtype), h], dim=1)
        for block in self.encoder.values():
            h = block(h, mask=keys, rope=self.embed.rope())
        return self.ln_enc(h)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor,
                src_mask: torch.Tensor | None = None, features: bool = False) -> torch.Tensor:
        return self.decode(tgt, self.encode(src, src_mask), src_mask, features=features)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor,
               src_mask: torch.Tensor | None = None, *, features: bool = False
               ) -> torch.Tensor:
        """Decoder logits over the encoder output ``memory``."""
        src_mask = _lead_keys(src_mask, memory.shape[1])
        keys = src_mask[:, None, None, :] if src_mask is not None else None
        x = self.embed(tgt)  # (B, T, C)
        for block in self.layers.values():
            x = block(x, causal=True, rope=self.embed.rope(), memory=memory, memory_mask=keys)
        h = self.ln_f(x)
        return h if features else self.lm_head(h)  # (B, T, C) or (B, T, vocab)


def _lead_keys(mask: torch.Tensor | None, columns: int) -> torch.Tensor | None:
    """A (B, S) key mask widened to ``columns`` by leading always-seen (virtual) columns."""
    if mask is None or mask.shape[1] == columns:
        return mask
    return torch.cat([mask.new_ones(mask.shape[0], columns - mask.shape[1]), mask], dim=1)


def build_model(cfg: ModelConfig) -> nn.Module:
    return EncoderDecoderLM(cfg) if cfg.arch == "encoder_decoder" else DecoderLM(cfg)


def count_params(model: nn.Module, non_embedding: bool = True) -> int:
    n = sum(p.numel() for p in model.parameters())
    pos = getattr(getattr(model, "embed", None), "pos", None)
    return n - pos.weight.numel() if non_embedding and pos is not None else n
