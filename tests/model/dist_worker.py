"""Runs training jobs on every rank of a torchrun launch (used by the distributed tests).

``python -m torch.distributed.run --nproc-per-node N tests/model/dist_worker.py SPEC OUT``:
SPEC is a JSON list of jobs ``{name, model, train, data, out_dir, resume}`` (or, for
fine-tuning, ``{name, train, out_dir, finetune: {sft_dir, base, method}}``); OUT receives, per
job, the losses rank 0 logged, the evaluation loss and per-rank memory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from lmforge.model.config import ModelConfig
from lmforge.model.data import PackedSequences, TokenStream
from lmforge.model.distributed import init_runtime, shutdown
from lmforge.model.objectives import SpecialTokens
from lmforge.model.train_config import TrainConfig
from lmforge.model.trainer import Trainer


def run_job(job: dict, runtime) -> dict:
    logged: dict[str, dict[int, float]] = {}

    def log(step: int, values) -> None:
        for key, value in values.items():
            logged.setdefault(key, {})[step] = float(value)

    if "finetune" in job:  # {sft_dir, base, method}: tasks.finetuning on this rank
        from lmforge.model.finetune import parse_method
        from lmforge.tasks.finetuning import finetune

        ft = job["finetune"]
        result = finetune(Path(ft["sft_dir"]), Path(ft["base"]), parse_method(ft["method"]),
                          TrainConfig(**job["train"]), Path(job["out_dir"]), runtime,
                          log_metrics=log, run_id=job["name"])
        return {"logged": logged, "val_loss": result.val_loss, "steps": result.steps,
                "checkpoint": str(result.checkpoint), "resumed_from": result.resumed_from}
    data = PackedSequences(TokenStream([Path(job["data"])], "<u2"), job["seq_len"])
    special = SpecialTokens(**job["special"]) if job.get("special") else None
    trainer = Trainer(ModelConfig(**job["model"]), TrainConfig(**job["train"]), runtime,
                      train=data, val=data, out_dir=Path(job["out_dir"]), special=special,
                      log_metrics=log, run_id=job["name"])
    if job.get("resume"):
        trainer.resume(Path(job["resume"]) if job["resume"] != "latest" else None)
    result = trainer.fit()
    return {"logged": logged, "val_loss": result.val_loss, "steps": result.steps,
            "checkpoint": str(result.checkpoint), "resumed_from": result.resumed_from}


def main() -> None:
    spec, out = Path(sys.argv[1]), Path(sys.argv[2])
    runtime = init_runtime("cpu")
    results = {}
    for job in json.loads(spec.read_text()):
        try:
            results[job["name"]] = run_job(job, runtime)
        except ValueError as exc:  # configuration refused: report, keep the group alive
            results[job["name"]] = {"error": str(exc)}
        if dist.is_initialized():
            dist.barrier()
    if runtime.main:
        out.write_text(json.dumps(results))
    shutdown(runtime)


if __name__ == "__main__":
    main()
