"""The causal decoder in Hugging Face ``transformers`` layouts, and back.

Two layouts, chosen by the position scheme, each the ``transformers`` architecture whose blocks
compute exactly what ours do (pre-LayerNorm, sequential attention then MLP, exact GELU, no
gating):

* learned or sinusoidal positions -> **GPT-2** (``GPT2LMHeadModel``): fused ``c_attn``, Conv1D
  weights stored (in, out); sinusoidal positions become the (fixed) ``wpe`` table.
* rotary positions -> **GPT-NeoX** (``GPTNeoXForCausalLM``, ``use_parallel_residual=False``,
  ``partial_rotary_factor=1``): fused ``query_key_value`` laid out per head as [q, k, v]; our
  rotary rotates interleaved channel pairs (2i, 2i+1), NeoX rotates halves (i, i + d/2), so the
  q and k rows of each head are permuted (attention scores are unchanged by it).

Why not the Llama layout for rotary models: Llama's blocks use RMSNorm and a gated (SwiGLU) MLP,
which our blocks do not have; a Llama export would not compute the same logits.

Each layout is one table of ``Param`` records used in both directions (export fuses, import
splits). Where our model has no bias, the HF side gets zeros; on import, a model whose biases are
all zero comes back without them. The exported ``config.json`` carries our ``ModelConfig`` under
``lmforge_model_config``, so a round trip restores the position scheme exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lmforge.model.config import ModelConfig
from lmforge.model.layers import sinusoidal_table
from lmforge.model.transformer import DecoderLM, build_model
from torch import nn

Tensors = list[torch.Tensor]
CONFIG_KEY = "lmforge_model_config"


@dataclass(frozen=True)
class Param:
    """One HF tensor, made from our tensors ``ours`` (names with ``{i}`` for the layer) by
    ``fuse`` on export and split back into them by ``split`` on import."""

    hf: str
    ours: tuple[str, ...]
    fuse: Callable[[Tensors, ModelConfig], torch.Tensor] = lambda t, cfg: t[0]
    split: Callable[[torch.Tensor, ModelConfig], Tensors] = lambda t, cfg: [t]
    bias: bool = False  # absent on our side when ModelConfig.bias is False


def _t(ts: Tensors, cfg: ModelConfig) -> torch.Tensor:
    return ts[0].t().contiguous()


def _t_back(t: torch.Tensor, cfg: ModelConfig) -> Tensors:
    return [t.t().contiguous()]


def _gpt2_qkv(ts: Tensors, cfg: ModelConfig) -> torch.Tensor:
    return torch.cat(ts, dim=0).t().contiguous() if ts[0].dim() == 2 else torch.cat(ts)


def _gpt2_qkv_back(t: torch.Tensor, cfg: ModelConfig) -> Tensors:
    t = t.t() if t.dim() == 2 else t
    return [c.contiguous() for c in t.chunk(3, dim=0)]


def _halves(head_dim: int) -> torch.Tensor:
    """Our channel order -> NeoX's: (0, 2, 4, ..., 1, 3, 5, ...)."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def _neox_qkv(ts: Tensors, cfg: ModelConfig) -> torch.Tensor:
    hs, order = cfg.n_embd // cfg.n_head, _halves(cfg.n_embd // cfg.n_head)
    q, k, v = (t.reshape(cfg.n_head, hs, *t.shape[1:]) for t in ts)
    q, k = q[:, order], k[:, order]
    return torch.stack([q, k, v], dim=1).reshape(3 * cfg.n_embd, *ts[0].shape[1:])


def _neox_qkv_back(t: torch.Tensor, cfg: ModelConfig) -> Tensors:
    hs = cfg.n_embd // cfg.n_head
    inverse = torch.argsort(_halves(hs))
    per_head = t.reshape(cfg.n_head, 3, hs, *t.shape[1:])
    q, k, v = (per_head[:, j] for j in range(3))
    q, k = q[:, inverse], k[:, inverse]
    return [x.reshape(cfg.n_embd, *t.shape[1:]).contiguous() for x in (q, k, v)]


def _gpt2(cfg: ModelConfig) -> list[Param]:
    layer = "transformer.h.{i}."
    ours = "layers.{i}."
    qkv = tuple(f"{ours}attn.{n}" for n in "qkv")
    params = [Param("transformer.wte.weight", ("embed.tok.weight",)),
              Param("transformer.wpe.weight", ("embed.pos.weight",)),
              Param("transformer.ln_f.weight", ("ln_f.weight",)),
              Param("transformer.ln_f.bias", ("ln_f.bias",), bias=True)]
    for kind in ("weight", "bias"):
        bias = kind == "bias"
        params += [
            Param(f"{layer}ln_1.{kind}", (f"{ours}ln_1.{kind}",), bias=bias),
            Param(f"{layer}ln_2.{kind}", (f"{ours}ln_2.{kind}",), bias=bias),
            Param(f"{layer}attn.c_attn.{kind}", tuple(f"{q}.{kind}" for q in qkv), _gpt2_qkv,
                  _gpt2_qkv_back, bias=bias),
            Param(f"{layer}attn.c_proj.{kind}", (f"{ours}attn.proj.{kind}",),
                  *((_t, _t_back) if not bias else ()), bias=bias),
            Param(f"{layer}mlp.c_fc.{kind}", (f"{ours}mlp.up.{kind}",),
                  *((_t, _t_back) if not bias else ()), bias=bias),
            Param(f"{layer}mlp.c_proj.{kind}", (f"{ours}mlp.down.{kind}",),
                  *((_t, _t_back) if not bias else ()), bias=bias)]
    if not cfg.tie_weights:
        params.append(Param("lm_head.weight", ("lm_head.weight",)))
    return params


def _neox(cfg: ModelConfig) -> list[Param]:
    layer = "gpt_neox.layers.{i}."
    ours = "layers.{i}."
    params = [Param("gpt_neox.embed_in.weight", ("embed.tok.weight",)),
              Param("gpt_neox.final_layer_norm.weight", ("ln_f.weight",)),
              Param("gpt_neox.final_layer_norm.bias", ("ln_f.bias",), bias=True)]
    for kind in ("weight", "bias"):
        bias = kind == "bias"
        params += [
            Param(f"{layer}input_layernorm.{kind}", (f"{ours}ln_1.{kind}",), bias=bias),
            Param(f"{layer}post_attention_layernorm.{kind}", (f"{ours}ln_2.{kind}",),
                  bias=bias),
            Param(f"{layer}attention.query_key_value.{kind}",
                  tuple(f"{ours}attn.{n}.{kind}" for n in "qkv"), _neox_qkv, _neox_qkv_back,
                  bias=bias),
            Param(f"{layer}attention.dense.{kind}", (f"{ours}attn.proj.{kind}",), bias=bias),
            Param(f"{layer}mlp.dense_h_to_4h.{kind}", (f"{ours}mlp.up.{kind}",), bias=bias),
            Param(f"{layer}mlp.dense_4h_to_h.{kind}", (f"{ours}mlp.down.{kind}",), bias=bias)]
    if not cfg.tie_weights:
        params.append(Param("lm_head.weight", ("lm_head.weight",)))
    return params


@dataclass(frozen=True)
class Layout:
    model_type: str
    params: Callable[[ModelConfig], list[Param]]
    config: Callable[[ModelConfig], dict[str, Any]]


LAYOUTS = {
    "gpt2": Layout("gpt2", _gpt2, lambda cfg: {
        "architectures": ["GPT2LMHeadModel"], "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
        "n_head": cfg.n_head, "n_positions": cfg.block_size, "n_inner": cfg.mlp_width,
        "activation_function": "gelu", "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout, "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": cfg.tie_weights, "scale_attn_weights": True}),
    "gpt_neox": Layout("gpt_neox", _neox, lambda cfg: {
        "architectures": ["GPTNeoXForCausalLM"], "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.mlp_width, "hidden_act": "gelu",
        "max_position_embeddings": cfg.block_size, "layer_norm_eps": 1e-5,
        "use_parallel_residual": False, "attention_bias": True,
        "attention_dropout": cfg.dropout, "hidden_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie_weights,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base,
                            "partial_rotary_factor": 1.0}}),
}


def layout_of(cfg: ModelConfig) -> Layout:
    if cfg.arch != "causal":
        raise ValueError(f"only the causal decoder exports to transformers (this model is "
                         f"arch={cfg.arch!r}: a prefix decoder or encoder-decoder has no "
                         "transformers architecture that computes the same)")
    if cfg.n_head * cfg.head_size != cfg.n_embd:
        raise ValueError(f"{cfg.n_head} heads of {cfg.head_size} (heads pruned) do not fill the "
                         f"width {cfg.n_embd}: GPT-2 and GPT-NeoX tie the head size to it, so "
                         "this model does not export")
    return LAYOUTS["gpt_neox" if cfg.position == "rotary" else "gpt2"]


def _names(param: Param, i: int) -> tuple[str, list[str]]:
    return param.hf.format(i=i), [o.format(i=i) for o in param.ours]


def _expand(params: list[Param], cfg: ModelConfig) -> list[tuple[Param, str, list[str]]]:
    out = []
    for p in params:
        layers = range(cfg.n_layer) if "{i}" in p.hf else range(1)
        out += [(p, *_names(p, i)) for i in layers]
    return out


def hf_state(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``config.json`` fields, state dict) of ``model`` in its HF layout."""
    cfg: ModelConfig = model.cfg  # type: ignore[assignment]
    layout = layout_of(cfg)
    if any(getattr(m, "kv_prefix", None) is not None for m in model.modules()) or getattr(
            model, "prompt", None) is not None:
        raise ValueError("the model carries prefix/P-tuning modules, which transformers "
                         "cannot run; export the base, or a LoRA/full fine-tune")
    ours = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    if cfg.position == "sinusoidal":
        ours["embed.pos.weight"] = sinusoidal_table(cfg.block_size, cfg.n_embd)
    state = {}
    for param, hf, names in _expand(layout.params(cfg), cfg):
        if param.bias and not cfg.bias:  # HF's module has a bias: zeros compute the same
            shape = [ours[n.replace(".bias", ".weight")].shape[0] for n in names]
            tensors = [torch.zeros(s) for s in shape]
        else:
            tensors = [ours[n] for n in names]
        state[hf] = param.fuse(tensors, cfg)
    config = {"model_type": layout.model_type, "vocab_size": cfg.vocab_size,
              "dtype": "float32", CONFIG_KEY: cfg.model_dump(mode="json"),
              **layout.config(cfg)}
    return config, state


def to_transformers(model: nn.Module, special: dict[str, int] | None = None) -> nn.Module:
    """The ``transformers`` model computing what ``model`` computes (``special``: token ids
    for ``bos_token_id``/``eos_token_id``/``pad_token_id``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config, state = hf_state(model)
    model_type = config.pop("model_type")
    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None} | (special or {})
    hf_config = AutoConfig.for_model(model_type, **config, **ids)
    hf = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if model.cfg.tie_weights else set()  # type: ignore[union-attr]
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"layout mismatch: missing {sorted(set(missing) - tied)}, "
                           f"unexpected {sorted(unexpected)}")
    if tied:
        hf.tie_weights()
    return hf.eval()


def from_hf_state(config: dict[str, Any], state: dict[str, torch.Tensor]) -> DecoderLM:
    """Our causal decoder from an HF GPT-2 or GPT-NeoX config and state dict."""
    cfg = _our_config(config, state)
    layout = layout_of(cfg)
    ours: dict[str, torch.Tensor] = {}
    for param, hf, names in _expand(layout.params(cfg), cfg):
        if param.bias and not cfg.bias:
            continue
        if hf not in state:
            raise ValueError(f"the checkpoint lacks {hf}")
        ours |= dict(zip(names, param.split(state[hf].float(), cfg), strict=True))
    if cfg.tie_weights:
        ours["lm_head.weight"] = ours["embed.tok.weight"]
    if cfg.position == "sinusoidal":
        ours.pop("embed.pos.weight")
    model = build_model(cfg)
    model.load_state_dict(ours)
    return model.eval()  # type: ignore[return-value]


def _our_config(config: dict[str, Any], state: dict[str, torch.Tensor]) -> ModelConfig:
    if CONFIG_KEY in config:  # written by us: exact
        cfg = ModelConfig.model_validate(config[CONFIG_KEY])
        if cfg.position == "sinusoidal" and not torch.allclose(
                state["transformer.wpe.weight"].float(),
                sinusoidal_table(cfg.block_size, cfg.n_embd), atol=1e-6):
            cfg = cfg.model_copy(update={"position": "learned"})  # the table was trained
        return cfg
    kind = config.get("model_type")
    biases = [v for k, v in state.items() if k.endswith(".bias") and "attn.bias" not in k
              and "masked_bias" not in k]
    bias = any(bool(b.abs().max() > 0) for b in biases)
    if kind == "gpt2":
        act = config.get("activation_function", "gelu_new")
        problems = [f"activation_function={act!r} (lmforge's MLP uses exact GELU: 'gelu')"
                    ] if act != "gelu" else []
        if config.get("n_inner") not in (None, 4 * config["n_embd"]):
            problems.append(f"n_inner={config['n_inner']} (lmforge's MLP is 4 x n_embd)")
        if config.get("scale_attn_by_inverse_layer_idx") or config.get(
                "reorder_and_upcast_attn"):
            problems.append("scaled or reordered attention")
        _refuse(problems, kind)
        return ModelConfig(flavor="custom", arch="causal", position="learned",
                           n_layer=config["n_layer"], n_head=config["n_head"],
                           n_embd=config["n_embd"], block_size=config["n_positions"],
                           vocab_size=config["vocab_size"], bias=bias,
                           dropout=float(config.get("resid_pdrop", 0.0)),
                           tie_weights=config.get("tie_word_embeddings", True))
    if kind == "gpt_neox":
        rope = config.get("rope_parameters") or {}
        problems = []
        if config.get("use_parallel_residual", True):
            problems.append("use_parallel_residual=true (lmforge's blocks are sequential)")
        if float(rope.get("partial_rotary_factor", config.get("rotary_pct", 0.25))) != 1.0:
            problems.append("partial rotary (lmforge rotates every channel)")
        if config.get("hidden_act", "gelu") != "gelu":
            problems.append(f"hidden_act={config.get('hidden_act')!r} (lmforge: 'gelu')")
        if config.get("intermediate_size") != 4 * config["hidden_size"]:
            problems.append("intermediate_size != 4 x hidden_size")
        _refuse(problems, kind)
        return ModelConfig(flavor="custom", arch="causal", position="rotary",
                           n_layer=config["num_hidden_layers"],
                           n_head=config["num_attention_heads"],
                           n_embd=config["hidden_size"],
                           block_size=config["max_position_embeddings"],
                           vocab_size=config["vocab_size"], bias=bias,
                           rope_base=float(rope.get("rope_theta", config.get(
                               "rotary_emb_base", 10_000.0))),
                           tie_weights=config.get("tie_word_embeddings", False))
    raise ValueError(f"model_type {kind!r}: lmforge imports gpt2 and gpt_neox layouts")


def _refuse(problems: list[str], kind: str) -> None:
    if problems:
        raise ValueError(f"this {kind} model computes something lmforge's blocks do not: "
                         + "; ".join(problems))


def load_hf_folder(folder: Path) -> DecoderLM:
    """Our model from a ``save_pretrained`` folder (``config.json`` + safetensors)."""
    import json

    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {folder}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state |= load_file(str(f))
    return from_hf_state(config, state)
