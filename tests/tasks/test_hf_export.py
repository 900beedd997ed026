"""The exported folder as a transformers user opens it, offline: AutoModelForCausalLM gives our
logits, AutoTokenizer our token ids, apply_chat_template the ids fine-tuning trained on, greedy
generate() our generator's tokens; the folder imports back to the same weights."""

from __future__ import annotations

import json

import pytest
import torch
from lmforge.model.checkpoint import load_model, save_model
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate
from lmforge.model.transformer import build_model
from lmforge.tasks.hf_export import export_hf, import_hf
from lmforge.tasks.sft import ChatTemplate, Message
from lmforge.tasks.tokenizer import load_tokenizer


@pytest.fixture(scope="module", params=["learned", "rotary"])
def exported(request, chat_tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"hf-{request.param}")
    vocab = load_tokenizer(str(chat_tokenizer)).get_vocab_size()
    cfg = ModelConfig(vocab_size=vocab, n_layer=2, n_head=4, n_embd=64, block_size=128,
                      position=request.param)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = save_model(tmp / "model.pt", model, cfg, step=7, tokens_seen=1234)
    return path, export_hf(path, chat_tokenizer, tmp / "hf", {"mlflow_run_id": "abc"})


def test_auto_classes_load_the_folder_with_our_logits(exported, chat_tokenizer) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, folder = exported
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "lmforge.json"} <= {p.name for p in folder.iterdir()}
    meta = json.loads((folder / "lmforge.json").read_text())
    assert meta["step"] == 7 and meta["mlflow_run_id"] == "abc"
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    text = "Rivers carry sediment to the sea, where deltas form over centuries."
    ids = tok(text)["input_ids"]
    assert ids == load_tokenizer(str(chat_tokenizer)).encode(text).ids
    x = torch.tensor([ids])
    with torch.no_grad():
        assert (load_model(path)(x) - hf(x).logits).abs().max() <= 1e-4


def test_chat_template_and_greedy_generation_match_ours(exported, chat_tokenizer) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    chat = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Name a planet with rings."},
            {"role": "assistant", "content": "Saturn."},
            {"role": "user", "content": "And one without?"}]
    template = ChatTemplate(str(chat_tokenizer))
    messages = [Message(m["role"], m["content"]) for m in chat]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                  return_dict=False)
    assert list(ids) == template.prompt(messages)
    full = tok.apply_chat_template(chat[:3], tokenize=True, return_dict=False)
    assert list(full) == template.encode(messages[:3])[0]
    ours = generate(load_model(path), template.prompt(messages), Sampling(
        max_new_tokens=12, stop=frozenset({template.eot})))
    out = hf.generate(torch.tensor([template.prompt(messages)]), max_new_tokens=12,
                      do_sample=False)
    assert out[0, len(ids):].tolist() == ours


def test_the_folder_imports_back_to_the_same_weights(exported, tmp_path) -> None:
    path, folder = exported
    back = import_hf(folder, tmp_path / "model.pt")
    assert (tmp_path / "tokenizer.json").exists()
    a, b = load_model(path).state_dict(), load_model(back).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(back, weights_only=True)["step"] == 7
