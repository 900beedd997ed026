"""One rank of a torchrun launch (``python -m lmforge.flows.train_worker``): train, rank 0
reports to the MLflow run by id and writes the result for the launcher."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.flows.config import RunConfig, load_config
from lmforge.flows.tracking import Tracker, system_metrics, tracking_uri
from lmforge.infra.settings import prepare_environment
from lmforge.model.atomic import write_json
from lmforge.model.distributed import Runtime, init_runtime, shutdown
from lmforge.model.train_config import TrainConfig, TrainResult
from lmforge.tasks.shards import Layout
from mlflow.tracking import MlflowClient

PROGRESS = "@@lmforge-step "  # the launcher (flows.train) reads these lines


@dataclass(frozen=True)
class WorkerStage:
    """What the ranks of one torchrun launch run: the section whose ``train`` settings (launch,
    ZeRO, precision) apply, and the trainer call. The flow that launches prepares the data."""

    name: str
    section: Callable[[RunConfig], TrainConfig]
    run: Callable[[RunConfig, Path, Runtime, dict[str, Any]], TrainResult]


def _train(cfg: RunConfig, root: Path, runtime: Runtime, report: dict[str, Any]
           ) -> TrainResult:
    from lmforge.tasks.training import train

    return train(root / "tokens", cfg.model, cfg.train, root / "model", runtime, **report)


def _finetune(cfg: RunConfig, root: Path, runtime: Runtime, report: dict[str, Any]
              ) -> TrainResult:
    from lmforge.flows.finetune import base_info, base_model
    from lmforge.tasks.finetuning import finetune

    assert cfg.finetune is not None
    base = base_model(cfg)
    return finetune(root / "finetune" / "sft", base, cfg.finetune.method, cfg.finetune.train,
                    root / "finetune", runtime, base=base_info(base), **report)


def _pairs(objective: str) -> Callable[[RunConfig, Path, Runtime, dict[str, Any]],
                                       TrainResult]:
    def run(cfg: RunConfig, root: Path, runtime: Runtime, report: dict[str, Any]
            ) -> TrainResult:
        from lmforge.flows.align import start_model
        from lmforge.tasks.alignment import align

        section = cfg.align
        assert section is not None
        out_dir = root / "align" / objective
        return align(out_dir / "pairs", start_model(cfg), objective,  # type: ignore[arg-type]
                     section.train, out_dir, runtime, method=section.method,
                     beta=section.beta, **report)

    return run


def _safety(cfg: RunConfig, root: Path, runtime: Runtime, report: dict[str, Any]
            ) -> TrainResult:
    from lmforge.flows.align import start_model
    from lmforge.flows.finetune import base_info
    from lmforge.tasks.finetuning import finetune

    assert cfg.align is not None
    base, out_dir = start_model(cfg), root / "align" / "safety"
    return finetune(out_dir / "sft", base, cfg.align.method, cfg.align.train, out_dir, runtime,
                    base=base_info(base), **report)


def _align_train(cfg: RunConfig) -> TrainConfig:
    if cfg.align is None:
        raise ValueError("the config has no align: section")
    return cfg.align.train


def _finetune_train(cfg: RunConfig) -> TrainConfig:
    if cfg.finetune is None:
        raise ValueError("the config has no finetune: section")
    return cfg.finetune.train


STAGES = {s.name: s for s in (
    WorkerStage("train", lambda cfg: cfg.train, _train),
    WorkerStage("finetune", _finetune_train, _finetune),
    WorkerStage("dpo", _align_train, _pairs("dpo")),
    WorkerStage("reward", _align_train, _pairs("reward")),
    WorkerStage("safety", _align_train, _safety))}


def _progress(done: int) -> None:
    sys.stdout.write(f"{PROGRESS}{done}\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="resolved RunConfig YAML")
    parser.add_argument("--run-id", default="", help="MLflow run rank 0 logs into")
    parser.add_argument("--result", type=Path, required=True, help="rank 0 writes JSON here")
    parser.add_argument("--stage", choices=sorted(STAGES), default="train")
    args = parser.parse_args(argv)
    prepare_environment()  # offline defaults and log redaction, as in the launching process
    cfg = load_config(args.config)
    stage = STAGES[args.stage]
    train_cfg = stage.section(cfg)
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
        result = stage.run(cfg, root, runtime, report)
    if runtime.local_rank == 0:  # each node's launcher reads its own node's copy
        body = {k: str(v) if isinstance(v, Path) else v
                for k, v in dataclasses.asdict(result).items()}
        write_json(args.result, body)
    shutdown(runtime)


if __name__ == "__main__":
    main()
