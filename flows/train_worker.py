"""One rank of a torchrun launch (``python -m lmforge.flows.train_worker``): train, rank 0
reports to the MLflow run by id and writes the result for the launcher."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from lmforge.flows.config import load_config
from lmforge.flows.tracking import Tracker, system_metrics, tracking_uri
from lmforge.infra.settings import prepare_environment
from lmforge.model.atomic import write_json
from lmforge.model.distributed import init_runtime, shutdown
from lmforge.tasks.finetuning import finetune
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import train
from mlflow.tracking import MlflowClient

PROGRESS = "@@lmforge-step "  # the launcher (flows.train) reads these lines


def _progress(done: int) -> None:
    sys.stdout.write(f"{PROGRESS}{done}\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="resolved RunConfig YAML")
    parser.add_argument("--run-id", default="", help="MLflow run rank 0 logs into")
    parser.add_argument("--result", type=Path, required=True, help="rank 0 writes JSON here")
    parser.add_argument("--stage", choices=("train", "finetune"), default="train")
    args = parser.parse_args(argv)
    prepare_environment()  # offline defaults and log redaction, as in the launching process
    cfg = load_config(args.config)
    train_cfg = cfg.finetune.train if args.stage == "finetune" and cfg.finetune else cfg.train
    launch = train_cfg.launch
    runtime = init_runtime(train_cfg.device, launch.backend, launch.collective_timeout_s)
    tracker = None
    if runtime.main and args.run_id:
        client = MlflowClient(tracking_uri())
        run = client.get_run(args.run_id)
        tracker = Tracker(client, args.run_id, run.info.experiment_id)
    root = Layout(cfg.output.resolve()).root
    monitor = system_metrics(args.run_id) if tracker else contextlib.nullcontext()
    report = {"log_metrics": tracker.log_metrics if tracker else None,
              "run_id": args.run_id or None,
              "on_step": _progress if runtime.local_rank == 0 else None}
    with monitor:
        if args.stage == "finetune" and cfg.finetune is not None:
            from lmforge.flows.finetune import base_info, base_model

            base = base_model(cfg)
            result = finetune(root / "finetune" / "sft", base, cfg.finetune.method, train_cfg,
                              root / "finetune", runtime, base=base_info(base), **report)
        else:
            result = train(root / "tokens", cfg.model, cfg.train, root / "model", runtime,
                           **report)
    if runtime.local_rank == 0:  # each node's launcher reads its own node's copy
        body = {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(result).items()}
        write_json(args.result, body)
    shutdown(runtime)


if __name__ == "__main__":
    main()
