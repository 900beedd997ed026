"""The alignment flows on preference pairs: ``dpo`` (the model tuned with DPO against a frozen
copy of itself, registered as the next version with the alias ``aligned`` and evaluated by the
whole suite, security probes included) and ``reward-model`` (a reward model: the model with a
scalar head trained on the pairs; its held-out pair accuracy and margin are logged and the
model is kept as an artifact of the run).

Each MLflow run is nested under the caller's run, or under the run of the model it starts from,
and tagged with that run and its registry version. A rerun resumes from the newest checkpoint
of ``DIR/align/<objective>``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.flows.config import RunConfig
from lmforge.flows.evaluate import evaluate_model
from lmforge.flows.finetune import _base_version, base_info, data_files
from lmforge.flows.progress import step_progress
from lmforge.flows.steps import align_task, prepare_pairs_task
from lmforge.flows.tracking import system_metrics, tracked_run
from lmforge.flows.train import launch_task, registered_name
from lmforge.model.atomic import write_json
from lmforge.model.checkpoint import load_model
from lmforge.model.data import Rows
from lmforge.tasks.alignment import Objective, Stage, pair_metrics
from lmforge.tasks.finetuning import base_state
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import resumable_run_id
from prefect import flow


def start_model(cfg: RunConfig) -> Path:
    """``align.base``, else the fine-tuned model when there is one, else the trained one."""
    assert cfg.align is not None
    root = Layout(cfg.output.resolve()).root
    tuned = root / "finetune" / "model.pt"
    return (cfg.align.base or (tuned if tuned.is_file() else root / "model" / "model.pt")
            ).resolve()


@flow(name="align", flow_run_name="align-{cfg.output.name}")
def align_model(cfg: RunConfig, objective: Stage | None = None,
                parent_run_id: str | None = None) -> dict[str, Any]:
    """DPO, a reward model, PPO or safety tuning (``objective``, default ``align.objective``);
    returns the model's path, its registry version and the held-out metrics."""
    section = cfg.align
    if section is None:
        raise ValueError("the config has no align: section (data, objective, method, train)")
    return STAGES[objective or section.objective].flow(cfg, parent_run_id)


def _run(cfg: RunConfig, objective: Objective, parent_run_id: str | None) -> dict[str, Any]:
    section = cfg.align
    assert section is not None
    root = Layout(cfg.output.resolve()).root
    out_dir = root / "align" / objective
    if section.train.resume == "never":
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    previous = resumable_run_id(out_dir) if section.train.resume == "auto" else None
    stage = "dpo" if objective == "dpo" else "reward-model"
    base, info, run = _start(cfg, stage, parent_run_id, resume_run_id=previous)
    tokenizer = root / "tokenizer" / "tokenizer.json"
    arch = base_state(base)["model_config"]["arch"]
    manifest = prepare_pairs_task(data_files(section.data.paths, "align.data.paths"),
                                  tokenizer, section.data, out_dir / "pairs", arch)
    with run as tracker:
        base_version = _base_version(tracker, info["mlflow_run_id"])
        if base_version:
            tracker.set_tags({"lmforge.base_model_version": base_version})
        if tracker.run_id != previous:
            tracker.log_params({"align.objective": objective, "align.beta": section.beta,
                                **{f"method.{k}": v for k, v in section.method.model_dump()
                                   .items()},
                                **{f"pairs.{k}": manifest[k] for k in (
                                    "records", "pairs", "decontaminated", "too_long")}})
            tracker.log_artifact(out_dir / "pairs" / "manifest.json", "pairs")
        if section.train.launch.world == 1:
            with system_metrics(tracker.run_id), \
                    step_progress(section.train.steps, stage) as on_step:
                result = align_task(out_dir / "pairs", base, objective, section.train, out_dir,
                                    section.method, section.beta, tracker.log_metrics,
                                    tracker.run_id, on_step)
        else:  # the ranks read the pairs prepared above (train_worker.STAGES[objective])
            result = launch_task(cfg, tracker.run_id, out_dir, objective)
        val = Rows(out_dir / "pairs" / "val.npy")
        metrics: dict[str, float] = {}
        if len(val):
            reference = load_model(base) if objective == "dpo" else None
            got = pair_metrics(load_model(result.model_path), val, arch, objective,
                               reference=reference, beta=section.beta)
            metrics = {f"pairs/{k}": v for k, v in got.items()}
            tracker.log_metrics(result.steps, metrics)
        registered = None
        if objective == "dpo":
            registered = _register(cfg, tracker, result.model_path, tokenizer)
        else:
            tracker.log_artifact(result.model_path, "reward-model")
    if objective == "dpo":  # the suite (security probes included) on the aligned model
        evaluated = evaluate_model(cfg, result.model_path, tracker.run_id,
                                   training_run=tracker.run_id)
        metrics |= {f"eval/{k}": v for k, v in evaluated.items()}
    return {"model": str(result.model_path), "registered": registered,
            "base_model_version": base_version, "mlflow_run_id": tracker.run_id,
            "mlflow_url": tracker.url, "metrics": metrics}


@flow(name="dpo", flow_run_name="dpo-{cfg.output.name}")
def dpo_flow(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    return _run(cfg, "dpo", parent_run_id)


@flow(name="reward-model", flow_run_name="reward-model-{cfg.output.name}")
def reward_model_flow(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    return _run(cfg, "reward", parent_run_id)


def _register(cfg: RunConfig, tracker: Any, model: Path, tokenizer: Path) -> str:
    """The aligned model as the next version of the registered model, with align's alias."""
    section = cfg.align
    assert section is not None
    name = section.train.register_as or registered_name(cfg)
    version = tracker.register_model(name, model, tokenizer, section.train.alias, chat=True)
    return f"{name}/{version}@{section.train.alias}"


def _start(cfg: RunConfig, stage: str, parent_run_id: str | None,
           resume_run_id: str | None = None) -> tuple[Path, dict, Any]:
    """The start model, where it came from, and the stage's MLflow run: nested under the
    caller's run or the start model's, tagged with both."""
    base = start_model(cfg)
    info = base_info(base)
    tags = {"lmforge.base_model": str(base), "lmforge.align_objective": stage}
    if info["mlflow_run_id"]:
        tags["lmforge.base_run_id"] = info["mlflow_run_id"]
    return base, info, tracked_run(stage, cfg.tracking.experiment,
                                   parent_run_id or info["mlflow_run_id"], tags=tags,
                                   resume_run_id=resume_run_id)


@flow(name="ppo", flow_run_name="ppo-{cfg.output.name}")
def ppo_flow(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """RLHF with PPO from the start model against the reward model (plus the safety penalty
    when ``align.safety_weight`` > 0), on the prompts of the preference files."""
    import torch
    from lmforge.model.checkpoint import save_model
    from lmforge.model.ppo import add_value_head, ppo, reward_scorer, win_rate
    from lmforge.tasks.preference import prompts_of
    from lmforge.tasks.safety import safety_penalty, with_safety
    from lmforge.tasks.sft import ChatTemplate

    section = cfg.align
    assert section is not None
    root = Layout(cfg.output.resolve()).root
    tokenizer = root / "tokenizer" / "tokenizer.json"
    rm_path = (section.reward_model or root / "align" / "reward" / "model.pt").resolve()
    if not rm_path.is_file():
        raise FileNotFoundError(f"no reward model at {rm_path}: run `lmforge align --objective "
                                "reward` first or set align.reward_model")
    template = ChatTemplate(str(tokenizer))
    prompts = [template.prompt(p) for p in prompts_of(
        data_files(section.data.paths, "align.data.paths"))]
    held_out, prompts = prompts[:max(1, len(prompts) // 5)], prompts[len(prompts) // 5:]
    checkpoint, run_file = (root / "align" / "ppo" / name for name in ("checkpoint.pt",
                                                                        "run.json"))
    previous = None
    if checkpoint.is_file() and run_file.is_file():  # a rerun continues the killed run
        previous = json.loads(run_file.read_text())["mlflow_run_id"]
    base, _, run = _start(cfg, "ppo", parent_run_id, resume_run_id=previous)
    with run as tracker:
        write_json(run_file, {"mlflow_run_id": tracker.run_id})
        if base_version := _base_version(tracker, tracker.client.get_run(
                tracker.run_id).data.tags.get("lmforge.base_run_id")):
            tracker.set_tags({"lmforge.base_model_version": base_version})
        tracker.log_params({f"ppo.{k}": v for k, v in section.ppo.model_dump().items()}
                           | {"ppo.safety_weight": section.safety_weight,
                              "ppo.reward_model": str(rm_path)})
        torch.manual_seed(section.ppo.seed)
        policy, reference = add_value_head(load_model(base)), load_model(base)
        for p in policy.parameters():
            p.requires_grad_(True)
        score = reward_scorer(load_model(rm_path))
        if section.safety_weight > 0:
            score = with_safety(score, template, safety_penalty(
                cfg.curate.toxicity, cfg.curate.pii, toxicity_weight=section.safety_weight,
                pii_weight=section.safety_weight))
        with system_metrics(tracker.run_id):
            history = ppo(policy, reference, score, prompts, section.ppo, stop=template.eot,
                          pad=template.pad, log=tracker.log_metrics,
                          checkpoint=checkpoint)
        wins = win_rate(policy, reference, score, held_out, stop=template.eot,
                        pad=template.pad, max_new_tokens=section.ppo.max_new_tokens)
        metrics = {**history[-1], "ppo/win_rate": wins}
        tracker.log_metrics(len(history), {"ppo/win_rate": wins})
        del policy.value_head
        out = save_model(root / "align" / "ppo" / "model.pt", policy, policy.cfg,
                         step=len(history), tokens_seen=0)
        registered = _register(cfg, tracker, out, tokenizer)
    evaluated = evaluate_model(cfg, out, tracker.run_id, training_run=tracker.run_id)
    return {"model": str(out), "registered": registered, "mlflow_run_id": tracker.run_id,
            "mlflow_url": tracker.url,
            "metrics": metrics | {f"eval/{k}": v for k, v in evaluated.items()}}


@flow(name="safety-tune", flow_run_name="safety-tune-{cfg.output.name}")
def safety_tune_flow(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """Supervised refusals (and, with ``distill_prompts``, safe-context distillation) mixed
    with the instruction data, fine-tuned from the start model with the finetune method and
    align.train; the refusal rate on held-out harmful prompts before and after."""
    from lmforge.flows.steps import finetune_task, prepare_sft_task
    from lmforge.tasks.finetuning import heldout_loss
    from lmforge.tasks.safety import distill_safe_context, refusal_rate
    from lmforge.tasks.sft import ChatTemplate, SFTDataConfig

    section = cfg.align
    if section is None or section.safety is None:
        raise ValueError("safety tuning needs align.safety (refusals, eval_prompts)")
    safety = section.safety
    root = Layout(cfg.output.resolve()).root
    out_dir, tokenizer = root / "align" / "safety", root / "tokenizer" / "tokenizer.json"
    template = ChatTemplate(str(tokenizer))
    held_out = [json.loads(line)["prompt"] for line in
                Path(safety.eval_prompts).read_text().splitlines() if line.strip()]
    instructions = list(safety.instructions) or list(
        cfg.finetune.data.paths if cfg.finetune else ())
    files = data_files([*instructions, *safety.refusals], "align.safety data")
    if section.train.resume == "never":
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    previous = resumable_run_id(out_dir) if section.train.resume == "auto" else None
    base, info, run = _start(cfg, "safety-tune", parent_run_id, resume_run_id=previous)
    with run as tracker:
        start = load_model(base)
        distilled = 0
        if safety.distill_prompts:
            prompts = [json.loads(line)["prompt"] for line in
                       Path(safety.distill_prompts).read_text().splitlines() if line.strip()]
            path, distilled = distill_safe_context(start, template, prompts,
                                                   out_dir / "distilled.jsonl")
            files.append(path)
        data = SFTDataConfig(paths=tuple(str(f) for f in files),
                             seq_len=section.data.seq_len)
        manifest = prepare_sft_task(sorted(files), tokenizer, data, out_dir / "sft",
                                    start.cfg.arch)
        tracker.log_params({"safety.examples": manifest["examples"],
                            "safety.files": len(files), "safety.distilled": distilled,
                            "method.kind": section.method.kind})
        if section.train.launch.world == 1:
            with system_metrics(tracker.run_id), step_progress(section.train.steps,
                                                               "safety-tune") as on_step:
                result = finetune_task(out_dir / "sft", base, section.method, section.train,
                                       out_dir, tracker.log_metrics, tracker.run_id, info,
                                       on_step)
        else:
            result = launch_task(cfg, tracker.run_id, out_dir, "safety")
        tuned = load_model(result.model_path)
        metrics = {"safety/refusal_rate_before": refusal_rate(start, template, held_out),
                   "safety/refusal_rate": refusal_rate(tuned, template, held_out)}
        val = Rows(out_dir / "sft" / "val.npy")
        if len(val):
            metrics["safety/heldout_loss_before"] = heldout_loss(start, val, start.cfg.arch)[
                "response_loss"]
            metrics["safety/heldout_loss"] = heldout_loss(tuned, val, start.cfg.arch)[
                "response_loss"]
        tracker.log_metrics(result.steps, metrics)
        registered = _register(cfg, tracker, result.model_path, tokenizer)
    evaluated = evaluate_model(cfg, result.model_path, tracker.run_id,
                               training_run=tracker.run_id)
    return {"model": str(result.model_path), "registered": registered,
            "mlflow_run_id": tracker.run_id, "mlflow_url": tracker.url,
            "metrics": metrics | {f"eval/{k}": v for k, v in evaluated.items()}}


@dataclass(frozen=True)
class AlignStage:
    """One alignment method: its Prefect flow, whether it runs through the trainer (and so on
    torchrun when ``align.train.launch`` asks for several processes) and whether its result is
    registered ``@aligned``."""

    name: str
    flow: Callable[[RunConfig, str | None], dict[str, Any]]
    trainer: bool
    registers: bool
    summary: str


STAGES = {s.name: s for s in (
    AlignStage("dpo", dpo_flow, True, True, "DPO against a frozen copy of the start model"),
    AlignStage("reward", reward_model_flow, True, False,
               "a reward model (Bradley-Terry on the pairs)"),
    AlignStage("ppo", ppo_flow, False, True,
               "RLHF with PPO against the reward model (its own loop, one process)"),
    AlignStage("safety", safety_tune_flow, True, True,
               "refusals mixed into SFT and safe-context distillation"))}
