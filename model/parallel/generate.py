"""Tensor-parallel generation: the training TP plan (``model.parallel.tensor``: attention heads
and MLP columns split over the ranks, one all-reduce per attention and per MLP) applied to a
saved model, then the serving engine on every rank. Each rank caches only its own heads' keys
and values, so the KV memory per rank falls by the TP degree. Gloo on CPU, NCCL on GPUs:

    torchrun --nproc-per-node 2 -m lmforge.model.parallel.generate JOB.json OUT.json

``JOB.json``: ``{"model": "model.pt", "prompts": [[ids...]...], "max_new_tokens": N,
"temperature": T, "seed": S, "dtype": "float32"}``; rank 0 writes the new ids per prompt and
the KV bytes per token a rank holds to ``OUT.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from lmforge.model.atomic import write_text
from lmforge.model.checkpoint import load_model
from lmforge.model.distributed import init_runtime, shutdown
from lmforge.model.engine import Engine, generate_many
from lmforge.model.parallel.tensor import apply_tensor_parallel
from lmforge.model.sampling import Sampling
from torch.distributed.device_mesh import init_device_mesh


def main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    runtime = init_runtime(job.get("device", "cpu"))
    model = load_model(Path(job["model"])).to(getattr(torch, job.get("dtype", "float32")))
    if runtime.world > 1:
        mesh = init_device_mesh(runtime.device.type, (runtime.world,), mesh_dim_names=("tp",))
        apply_tensor_parallel(model, mesh=mesh, n_head=model.cfg.n_head)  # type: ignore
    model = model.to(runtime.device).eval()
    sampling = Sampling(max_new_tokens=int(job["max_new_tokens"]),
                        temperature=float(job.get("temperature", 0.0)),
                        seed=int(job.get("seed", 0)))
    out = generate_many(model, job["prompts"], sampling)
    kv = Engine(model, num_blocks=1).cache.bytes_per_token()
    if runtime.world > 1:
        dist.barrier()
    if runtime.main:
        write_text(Path(out_path), json.dumps({"generated": out, "kv_bytes_per_token": kv,
                                               "world": runtime.world}))
    shutdown(runtime)


if __name__ == "__main__":
    main(*sys.argv[1:3])
