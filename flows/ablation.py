"""The data ablation behind the survey's argument: the same model, trained on the same token
budget, on (a) curated and (b) uncurated data, or on two curation configs; both evaluated on
the same held-out text and the same task sets, and the difference reported.

Each arm is a full pipeline run (``DIR/<arm>``) nested under one ``ablation`` MLflow run. The
arms' tokenizers differ (each is trained on its own corpus), so the shared yardstick is bits
per byte of raw text: the held-out documents of arm A's curated shards ("clean") and of arm
B's ("raw"), chosen by the same id-hash split the token datasets use, so no arm trained on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.flows.compare import RunView, markdown, plot_metrics
from lmforge.flows.config import RunConfig, save_config
from lmforge.flows.pipeline import run_pipeline
from lmforge.flows.tracking import tracked_run
from lmforge.model.atomic import write_json, write_text
from lmforge.tasks.curate import CurateConfig
from lmforge.tasks.dedup import DedupConfig
from lmforge.tasks.evals.suite import heldout_texts, model_meta, score_texts
from lmforge.tasks.filters.quality import QualityConfig, QualityPlan
from lmforge.tasks.readers import SOURCE_KINDS
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_byte", "expected_max", "probability",
                   "leak_rate", "exact_rate", "matched_prefix")


def uncurated(cfg: RunConfig) -> RunConfig:
    """The same run with every curation stage after reading switched off: no quality or
    language rules, no dedup, no classifier, PII or toxicity stage."""
    off = {name: None for name in QualityConfig.model_fields}
    curate = CurateConfig(quality=QualityPlan.model_validate({k: off for k in SOURCE_KINDS}),
                          dedup=DedupConfig(exact=False, url=False, minhash=None),
                          classifier=None, pii=None, toxicity=None)
    return cfg.model_copy(update={"curate": curate})


def better(metric: str, a: float, b: float) -> str:
    """Which arm did better on ``metric`` ('a', 'b' or '='): lower losses, toxicity, leaks
    and memorisation; a bias gap nearer 0 and a stereotype rate nearer 0.5; higher scores."""
    last = metric.rsplit("/", maxsplit=1)[-1]
    if last == "gap_nats":
        a, b = abs(a), abs(b)
    elif last == "stereotype_rate":
        a, b = abs(a - 0.5), abs(b - 0.5)
    if a == b:
        return "="
    lower = (last in LOWER_IS_BETTER or last in ("gap_nats", "stereotype_rate")
             or "/entities/" in metric)
    return ("a" if a < b else "b") if lower else ("a" if a > b else "b")


def _arm(cfg: RunConfig, root: Path, name: str) -> RunConfig:
    # each arm is a model of its own, not a version of the other
    register = f"{cfg.tracking.experiment}-{cfg.model.arch}-{name}"
    return cfg.model_copy(update={"output": root / name,
                                  "train": cfg.train.model_copy(update={"register_as": register})})


@flow(name="ablation", flow_run_name="ablation-{cfg.output.name}")
def run_ablation(cfg: RunConfig, against: RunConfig | None = None,
                 names: tuple[str, str] = ("curated", "uncurated"),
                 heldout_docs: int = 200) -> dict[str, Any]:
    """Train and evaluate arm A (``cfg``) and arm B (``against``, default: ``cfg`` uncurated)
    with identical model, training and evaluation settings; returns the comparison."""
    root = cfg.output.resolve()
    other = against if against is not None else uncurated(cfg)
    same = {"model": cfg.model, "train": cfg.train, "evaluate": cfg.evaluate,
            "dataset": cfg.dataset, "tokenizer": cfg.tokenizer}
    arms = {names[0]: _arm(cfg, root, names[0]),
            names[1]: _arm(other.model_copy(update=same), root, names[1])}
    with tracked_run("ablation", cfg.tracking.experiment,
                     tags={"lmforge.arms": ",".join(names)}) as tracker:
        results = {}
        for name, arm in arms.items():
            save_config(arm, root / f"{name}.yaml")
            results[name] = run_pipeline.with_options(flow_run_name=f"ablation-{name}")(
                arm, tracker.run_id)
        texts = {"clean": heldout_texts(arms[names[0]].output / "curated",
                                        cfg.dataset.val_fraction, heldout_docs),
                 "raw": heldout_texts(arms[names[1]].output / "curated",
                                      cfg.dataset.val_fraction, heldout_docs)}
        views = []
        for name, arm in arms.items():
            metrics = {f"eval/{k}": v for k, v in results[name]["metrics"].items()}
            scored = score_texts(Path(results[name]["checkpoint"]), arm.output / "tokens",
                                 texts, cfg.evaluate.batch_size)
            for label, values in scored.items():
                metrics[f"heldout_{label}/bits_per_byte"] = values["bits_per_byte"]
            # the token budget both arms were given
            metrics["train/tokens_seen"] = float(
                model_meta(Path(results[name]["checkpoint"]))["tokens_seen"])
            views.append(RunView(results[name]["mlflow_run_id"], name, metrics=metrics))
        a, b = views
        rows = [{"metric": k, names[0]: f"{a.metrics[k]:.4g}", names[1]: f"{b.metrics[k]:.4g}",
                 "b - a": f"{b.metrics[k] - a.metrics[k]:+.4g}",
                 "better": {"a": names[0], "b": names[1], "=": "tie"}[
                     better(k, a.metrics[k], b.metrics[k])]}
                for k in sorted(set(a.metrics) & set(b.metrics))
                if not k.endswith(("/items", "/tokens", "/prompts", "/pairs", "/documents",
                                   "/generations"))]
        out = root / "ablation"
        out.mkdir(parents=True, exist_ok=True)
        figure = plot_metrics(views, ["heldout_clean/bits_per_byte", "heldout_raw/bits_per_byte",
                                      "eval/bits_per_byte", "eval/loss"], out, "ablation")
        report = {"arms": {v.name: {"mlflow_run_id": v.run_id, "metrics": v.metrics}
                           for v in views},
                  "heldout_documents": {k: len(v) for k, v in texts.items()}, "rows": rows}
        write_json(out / "ablation.json", report, indent=1)
        write_text(out / "ablation.md", markdown(rows))
        for v in views:
            tracker.log_metrics(0, {f"{v.name}/{k}": x for k, x in v.metrics.items()})
        for path in (out / "ablation.json", out / "ablation.md", figure):
            if path is not None:
                tracker.log_artifact(path, "ablation")
        create_table_artifact(rows, key="ablation", description=f"{names[0]} (a) vs "
                              f"{names[1]} (b): same model, same token budget")
        create_markdown_artifact(markdown(rows), key="ablation-report")
    return {**report, "figure": str(figure) if figure else None, "mlflow_run_id": tracker.run_id,
            "mlflow_url": tracker.url}
