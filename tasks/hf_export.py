"""A trained model as a Hugging Face folder (``AutoModelForCausalLM`` / ``AutoTokenizer`` /
``pipeline("text-generation")`` load it offline), and an HF folder back as ``model.pt``.

The folder: ``config.json`` + ``model.safetensors`` (``model.interchange``: GPT-2 or GPT-NeoX
layout), ``generation_config.json`` (stops at ``<|endoftext|>``), ``tokenizer.json`` +
``tokenizer_config.json`` with a chat template that renders exactly the token ids
``tasks.sft.ChatTemplate`` trains on, and ``lmforge.json`` naming the model it came from (its
step, tokens seen, fine-tuning method, and the MLflow run where known).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from lmforge.model.atomic import atomic_path, write_json
from lmforge.model.checkpoint import load_model, save_model
from lmforge.model.interchange import load_hf_folder, to_transformers
from lmforge.tasks.sft import ROLE_TOKEN
from lmforge.tasks.tokenizer import EOT, PAD


# the Jinja form of ChatTemplate: a role token, "\n" + content, <|endoftext|> after each reply
def _chat_template() -> str:
    branches = "".join(
        ("{% if " if i == 0 else "{% elif ") + f"message['role'] == '{role}' %}}{token}"
        for i, (role, token) in enumerate(ROLE_TOKEN.items()))
    return ("{% for message in messages %}" + branches
            + "{% else %}{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
            "{{ '\\n' + message['content'] }}"
            "{% if message['role'] == 'assistant' %}" + EOT + "{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}" + ROLE_TOKEN["assistant"] + "{% endif %}")


CHAT_TEMPLATE = _chat_template()


def hf_tokenizer(tokenizer_path: Path) -> Any:
    """``PreTrainedTokenizerFast`` over our ``tokenizer.json``, with its special tokens and the
    chat template."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_path), eos_token=EOT,
                                  bos_token=EOT, pad_token=PAD, unk_token=None)
    if all(tok.convert_tokens_to_ids(t) is not None for t in ROLE_TOKEN.values()):
        tok.chat_template = CHAT_TEMPLATE
    return tok


def export_hf(model_path: Path, tokenizer_path: Path, out: Path,
              provenance: dict[str, Any] | None = None) -> Path:
    """Write ``out`` (replacing it) as a transformers model folder; returns ``out``."""
    from transformers import GenerationConfig

    model = load_model(model_path)
    tok = hf_tokenizer(tokenizer_path)
    eot, pad = tok.convert_tokens_to_ids(EOT), tok.convert_tokens_to_ids(PAD)
    hf = to_transformers(model, {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": pad})
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    with atomic_path(out) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        GenerationConfig(bos_token_id=eot, eos_token_id=eot, pad_token_id=pad,
                         max_length=model.cfg.block_size).save_pretrained(tmp)  # type: ignore
        tok.model_max_length = model.cfg.block_size  # type: ignore[union-attr]
        tok.save_pretrained(tmp)
        write_json(tmp / "lmforge.json", {
            "source": str(model_path.resolve()), "step": state.get("step"),
            "tokens_seen": state.get("tokens_seen"), "adapter": state.get("adapter"),
            "layout": hf.config.model_type, **(provenance or {})}, indent=2)
    return out


def import_hf(folder: Path, out: Path) -> Path:
    """``model.pt`` (and ``tokenizer.json`` beside it, when the folder has one) from an HF
    GPT-2 or GPT-NeoX folder whose blocks compute what ours do."""
    model = load_hf_folder(folder)
    meta = json.loads((folder / "lmforge.json").read_text()) if (
        folder / "lmforge.json").is_file() else {}
    path = save_model(out, model, model.cfg, step=int(meta.get("step") or 0),
                      tokens_seen=int(meta.get("tokens_seen") or 0))
    if (folder / "tokenizer.json").is_file():
        shutil.copyfile(folder / "tokenizer.json", out.parent / "tokenizer.json")
    return path
