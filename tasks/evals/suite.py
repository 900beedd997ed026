"""Everything evaluated about one model file or checkpoint: held-out perplexity and bits per
byte per source, the configured benchmark tasks, and the security probes. One call is one Dask
task; it writes ``metrics.json`` and one ``predictions/<name>.jsonl`` per task and returns
the paths, so the flow passes files, not predictions.

Metric names: held-out ``loss``, ``perplexity``, ``bits_per_byte`` and ``<source>/...``;
tasks ``<task>/<metric>``; probes ``security/<probe>/<metric>``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import torch
from lmforge.model.atomic import write_json, write_text
from lmforge.model.checkpoint import load_any
from lmforge.model.data import PackedSequences, PlanStream
from lmforge.model.distributed import resolve_device
from lmforge.model.evaluate import Groups, evaluate_lm
from lmforge.model.score import Request, loglikelihood
from lmforge.tasks.dataset import split_of
from lmforge.tasks.evals.config import EvaluateConfig
from lmforge.tasks.evals.harness import LM, TaskResult, run_task
from lmforge.tasks.evals.security import (
    bias_probe,
    memorisation_probe,
    pii_probe,
    toxicity_probe,
    training_documents,
)
from lmforge.tasks.pii import PiiConfig
from lmforge.tasks.shards import iter_documents, list_shards
from lmforge.tasks.tokenizer import load_tokenizer
from lmforge.tasks.toxicity import ToxicityConfig
from lmforge.tasks.training import load_dataset_manifest, special_token_ids


@dataclass(frozen=True)
class Target:
    """A model to evaluate: the final ``model.pt`` or a sharded checkpoint folder."""

    path: Path
    step: int
    label: str  # "final" or "step-0000100"


@dataclass
class Outcome:
    target: Target
    metrics: dict[str, float]
    folder: Path
    predictions: dict[str, Path] = field(default_factory=dict)
    training_run_id: str | None = None
    seconds: float = 0.0


def model_meta(path: Path) -> dict[str, Any]:
    """Step and tokens seen of an exported ``model.pt`` (memory-mapped, weights not read)."""
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return {"step": int(state.get("step") or 0), "tokens_seen": int(state.get("tokens_seen") or 0)}


def list_targets(model_dir: Path, which: str) -> list[Target]:
    """The exported model, and with ``which == 'all'`` every complete checkpoint, by step."""
    targets = []
    final = model_dir / "model.pt"
    if final.exists():
        targets.append(Target(final, model_meta(final)["step"], "final"))
    if which == "all":
        for ckpt in sorted((model_dir / "checkpoints").glob("step-*")):
            if (ckpt / "meta.json").exists() and not ckpt.name.endswith(".tmp"):
                targets.append(Target(ckpt, int(ckpt.name.split("-")[1]), ckpt.name))
    return targets


def source_groups(tokens_dir: Path, manifest: dict[str, Any], stream: PlanStream) -> Groups:
    """Which source each position of the val stream belongs to, and bytes per token of each."""
    plan = pq.read_table(tokens_dir / manifest["plans"]["val"],
                         columns=["id", "source", "length"]).to_pandas()
    names = tuple(sorted(plan.source.unique()))
    index = pd.concat([pq.read_table(p, columns=["id", "nbytes"]).to_pandas()
                       for p in list_shards(tokens_dir / "index")], ignore_index=True)
    sized = plan.merge(index.drop_duplicates("id"), on="id", how="left")
    per = sized.groupby("source")[["nbytes", "length"]].sum()
    return Groups(stream.ends, plan.source.map({n: i for i, n in enumerate(names)}).to_numpy(),
                  names, {str(s): float(r["nbytes"] / r["length"])  # not r.nbytes: a pandas
                          for s, r in per.iterrows() if r["length"]})  # attribute


def heldout(lm: LM, tokens_dir: Path, manifest: dict[str, Any], cfg: EvaluateConfig,
            device: str) -> dict[str, float]:
    stream = PlanStream(tokens_dir, tokens_dir / manifest["plans"]["val"], manifest["dtype"])
    return evaluate_lm(lm.model, PackedSequences(stream, manifest["seq_len"]),
                       batch_size=cfg.batch_size, max_batches=cfg.max_batches,
                       text_bytes=manifest["splits"]["val"]["bytes"], device=device,
                       special=lm.special, groups=source_groups(tokens_dir, manifest, stream))


def text_bits_per_byte(lm: LM, texts: list[str]) -> dict[str, float]:
    """Bits per byte of raw documents: comparable across models with different tokenizers
    (the ablation's common yardstick). Each document is scored from its end-of-text start in
    block-sized pieces, every piece conditioned on the block before it."""
    block = int(lm.model.cfg.block_size)  # type: ignore[union-attr]
    requests = []
    for text in texts:
        ids = lm.encode(text)
        for start in range(0, len(ids), block // 2):
            context = (lm.special.eot, *ids[max(0, start - block // 2):start])
            requests.append(Request(context, tuple(ids[start:start + block // 2])))
    scored = loglikelihood(lm.model, requests, batch_size=lm.batch_size, pad=lm.special.pad)
    nats = -sum(s.logprob for s in scored)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    return {"bits_per_byte": nats / math.log(2) / max(1, nbytes), "bytes": float(nbytes),
            "documents": float(len(texts))}


def heldout_texts(curated: Path, val_fraction: float, limit: int) -> list[str]:
    """Texts of held-out documents (the same id-hash split as the token datasets), in shard
    order, at most ``limit``."""
    texts: list[str] = []
    for shard in list_shards(curated):
        for doc in iter_documents(shard):
            if split_of(doc.id, val_fraction) == "val":
                texts.append(doc.text)
                if len(texts) >= limit:
                    return texts
    return texts


def score_texts(model_path: Path, tokens_dir: Path, texts: dict[str, list[str]],
                batch_size: int) -> dict[str, dict[str, float]]:
    """Bits per byte of each named text set under a model (loaded once) and the tokenizer
    of its dataset."""
    manifest = load_dataset_manifest(tokens_dir)
    model, _ = load_any(model_path)
    lm = LM(model, load_tokenizer(manifest["tokenizer"]),
            special_token_ids(manifest["tokenizer"]), batch_size)
    return {name: text_bits_per_byte(lm, docs) for name, docs in texts.items()}


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_text(path, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n"
                                    for row in rows))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def evaluate_target(target: Target, tokens_dir: Path, cfg: EvaluateConfig, out: Path, *,
                    toxicity: ToxicityConfig | None = None, pii: PiiConfig | None = None
                    ) -> Outcome:
    """Run the whole evaluation of one model; predictions and metrics go under ``out``."""
    start = time.perf_counter()
    manifest = load_dataset_manifest(tokens_dir)
    device = resolve_device(cfg.device)
    model, meta = load_any(target.path)
    model.to(device)
    lm = LM(model, load_tokenizer(manifest["tokenizer"]),
            special_token_ids(manifest["tokenizer"]), cfg.batch_size)
    folder = out / target.label
    outcome = Outcome(target, {}, folder, training_run_id=meta.get("mlflow_run_id"))
    outcome.metrics |= heldout(lm, tokens_dir, manifest, cfg, str(device))

    def record(prefix: str, result: TaskResult) -> None:
        outcome.metrics |= {f"{prefix}/{k}": v for k, v in result.metrics.items()}
        outcome.predictions[prefix] = _write_rows(
            folder / "predictions" / f"{safe_name(prefix)}.jsonl", result.predictions)

    for task_cfg in cfg.tasks:
        record(task_cfg.name, run_task(lm, task_cfg))
    sec = cfg.security
    if sec.toxicity_prompts is not None:
        record("security/toxicity", toxicity_probe(lm, sec.toxicity_prompts, sec,
                                                   toxicity or ToxicityConfig()))
    if sec.pii_prompts is not None:
        record("security/pii", pii_probe(lm, sec.pii_prompts, sec, pii or PiiConfig()))
    if sec.bias_pairs is not None:
        record("security/bias", bias_probe(lm, sec.bias_pairs))
    if sec.memorisation is not None:
        mem = sec.memorisation
        docs = training_documents(tokens_dir, manifest["plans"]["train"], manifest["dtype"],
                                  mem.prefix_tokens + mem.continuation_tokens, mem.samples,
                                  mem.seed)
        if docs:
            record("security/memorisation", memorisation_probe(lm, docs, mem))
    outcome.seconds = time.perf_counter() - start
    write_json(folder / "metrics.json", {"model": str(target.path), "step": target.step,
                                         "metrics": outcome.metrics}, indent=1, default=float)
    return outcome


def share_cores() -> None:
    """On a Dask worker, torch gets the worker's threads (workers run side by side on the
    machine); elsewhere torch keeps its default."""
    try:
        from distributed import get_worker

        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    except (ImportError, ValueError, AttributeError):
        return

