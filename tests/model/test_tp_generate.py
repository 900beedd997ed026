"""Tensor-parallel generation on 2 gloo ranks (the training TP plan, then the engine) gives what
one process gives, greedy and sampled, with half the KV memory per rank."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from lmforge.model.checkpoint import load_model, save_model
from lmforge.model.config import ModelConfig
from lmforge.model.generate import Sampling, generate_batch
from lmforge.model.transformer import build_model


def test_two_rank_tensor_parallel_generation_equals_one_rank(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(flavor="custom", n_layer=2, n_head=4, n_embd=32, vocab_size=89,
                      block_size=64, position="rotary", bias=True)
    model = build_model(cfg)
    with torch.no_grad():  # outputs that differ between prompts and steps
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    path = save_model(tmp_path / "model.pt", model, cfg, step=0, tokens_seen=0)
    prompts = [[5, 6, 7], list(range(10, 35)), [3] * 9, [60, 61, 62, 1]]
    reference = load_model(path).double()
    results = {}
    for name, temperature in (("greedy", 0.0), ("sampled", 1.0)):
        job = {"model": str(path), "prompts": prompts, "max_new_tokens": 12,
               "temperature": temperature, "seed": 3, "dtype": "float64"}
        (tmp_path / f"{name}.json").write_text(json.dumps(job))
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             "--nproc-per-node=2", "-m", "lmforge.model.parallel.generate",
             str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}-out.json")],
            capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results[name] = json.loads((tmp_path / f"{name}-out.json").read_text())
        alone = generate_batch(reference, prompts, Sampling(max_new_tokens=12,
                                                            temperature=temperature, seed=3))
        assert results[name]["generated"] == alone, name
    from lmforge.model.engine import Engine

    single = Engine(reference, num_blocks=1).cache.bytes_per_token()
    assert results["greedy"]["world"] == 2
    assert results["greedy"]["kv_bytes_per_token"] * 2 == single
