"""Model configuration and named flavors (``debug`` for tests and the sample, GPT-2 sizes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FLAVORS: dict[str, dict[str, Any]] = {
    "debug": {"n_layer": 2, "n_head": 4, "n_embd": 128},
    "125m": {"n_layer": 12, "n_head": 12, "n_embd": 768},  # GPT-2 small
    "350m": {"n_layer": 24, "n_head": 16, "n_embd": 1024},  # GPT-2 medium
    "1b": {"n_layer": 24, "n_head": 16, "n_embd": 2048},
}


class ModelConfig(BaseModel):
    """Transformer shape; ``flavor`` fills the size fields that are not set explicitly."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flavor: Literal["debug", "125m", "350m", "1b", "custom"] = Field(
        "debug", description="named size; 'custom' uses n_layer/n_head/n_embd as given")
    arch: Literal["causal", "prefix", "encoder_decoder"] = Field(
        "causal", description="causal decoder (GPT), prefix decoder (bidirectional over the "
        "prefix, causal after: GLM/PaLM prefix-LM), or encoder-decoder (T5)")
    position: Literal["learned", "sinusoidal", "rotary"] = Field(
        "learned", description="absolute learned (GPT-2), fixed sinusoidal (Vaswani et al.), "
        "or rotary (RoPE, Su et al.) positions")
    n_layer: int = Field(0, ge=0, description="decoder blocks (0 = from flavor)")
    n_encoder_layer: int = Field(0, ge=0, description="encoder blocks of encoder_decoder "
                                 "(0 = n_layer)")
    n_head: int = Field(0, ge=0, description="attention heads (0 = from flavor)")
    n_embd: int = Field(0, ge=0, description="model width (0 = from flavor)")
    block_size: int = Field(256, ge=8, description="longest sequence the model sees")
    vocab_size: int = Field(0, ge=0, description="0 = taken from the tokenizer at train time")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on attention and MLP outputs")
    bias: bool = Field(False, description="bias in Linear and LayerNorm (GPT-2 had them)")
    tie_weights: bool = Field(True, description="share token embedding and output weights")
    rope_base: float = Field(10_000.0, gt=0, description="rotary frequency base")
    head_dim: int = Field(0, ge=0, description="width of one attention head (0 = n_embd / "
                          "n_head; structured pruning keeps it while removing heads)")
    mlp_hidden: int = Field(0, ge=0, description="MLP hidden width (0 = 4 n_embd; structured "
                            "pruning narrows it)")

    @property
    def head_size(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        return self.mlp_hidden or 4 * self.n_embd

    @model_validator(mode="after")
    def _fill_flavor(self) -> ModelConfig:
        if self.flavor != "custom":
            for key, value in FLAVORS[self.flavor].items():
                if getattr(self, key) == 0:
                    object.__setattr__(self, key, value)
        if self.n_encoder_layer == 0:
            object.__setattr__(self, "n_encoder_layer", self.n_layer)
        problems = [f"{k} must be > 0 for flavor 'custom'" for k in ("n_layer", "n_head", "n_embd")
                    if getattr(self, k) == 0]
        if not problems and not self.head_dim and self.n_embd % self.n_head:
            problems.append(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not problems and self.position == "rotary" and self.head_size % 2:
            problems.append("rotary positions need an even head size (n_embd / n_head)")
        if problems:
            raise ValueError("; ".join(problems))
        return self
