"""Side-by-side comparison of MLflow runs: the params that differ, the metrics, loss curves
and metric bars as PNGs. A run's view includes its direct child runs (a pipeline run shows its
train run's loss curve and its evaluate run's metrics), so whole pipeline runs compare as
easily as single training runs. The figures and the table are logged to a ``compare`` run and
a Prefect table artifact."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.flows.tracking import tracked_run, tracking_uri
from lmforge.model.atomic import write_text
from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in workers
from mlflow.tracking import MlflowClient
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

CURVES = ("train/loss", "val/loss")  # histories drawn as curves when a run has them
HIDDEN = ("system/",)  # metric prefixes left out of the table


@dataclass
class RunView:
    run_id: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.run_id[:8]})"


def collect(client: MlflowClient, run_id: str) -> RunView:
    """The run's params and latest metrics, completed by its direct children's."""
    run = client.get_run(run_id)
    view = RunView(run_id, run.data.tags.get("mlflow.runName", run_id[:8]),
                   dict(run.data.params), dict(run.data.metrics))
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    sources = [run, *children]
    for child in children:
        for key, value in child.data.params.items():
            view.params.setdefault(key, value)
        for key, value in child.data.metrics.items():
            view.metrics.setdefault(key, value)
    for key in CURVES:
        for source in sources:
            if key in source.data.metrics:
                history = client.get_metric_history(source.info.run_id, key)
                if len(history) > 1:
                    view.curves[key] = sorted((m.step, m.value) for m in history)
                    break
    return view


def differing_params(views: list[RunView]) -> list[str]:
    keys = sorted({k for v in views for k in v.params})
    return [k for k in keys if len({v.params.get(k) for v in views}) > 1]


def table_rows(views: list[RunView], metrics: list[str] | None = None) -> list[dict[str, str]]:
    """One row per differing param, then per metric; one column per run."""
    rows = [{"name": f"param {k}", **{v.label: v.params.get(k, "-") for v in views}}
            for k in differing_params(views)]
    keys = metrics or sorted({k for v in views for k in v.metrics
                              if not k.startswith(HIDDEN)})
    for key in keys:
        rows.append({"name": key, **{v.label: _fmt(v.metrics.get(key)) for v in views}})
    return rows


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def plot_curves(views: list[RunView], out: Path) -> list[Path]:
    files = []
    for key in CURVES:
        drawn = [v for v in views if key in v.curves]
        if not drawn:
            continue
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        for v in drawn:
            steps, values = zip(*v.curves[key], strict=True)
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, label=v.label)
        ax.set(xlabel="step", ylabel=key, title=key)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        files.append(_save(fig, out / f"curve-{key.replace('/', '_')}.png"))
    return files


def plot_metrics(views: list[RunView], keys: list[str], out: Path, name: str = "metrics"
                 ) -> Path | None:
    keys = [k for k in keys if any(k in v.metrics for v in views)]
    if not keys:
        return None
    fig = Figure(figsize=(max(6, 0.6 * len(keys) * len(views)), 4))
    ax = fig.subplots()
    width = 0.8 / len(views)
    for i, v in enumerate(views):
        ax.bar([k + i * width for k in range(len(keys))],
               [v.metrics.get(key, float("nan")) for key in keys], width, label=v.label)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys, rotation=30,
                  ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / f"{name}.png")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def markdown(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0]) if rows else ["name"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


DEFAULT_BARS = ("eval/loss", "eval/bits_per_byte", "val/loss", "train/loss")


@flow(name="compare", flow_run_name="compare-{experiment}")
def compare_runs(run_ids: list[str], out: Path, experiment: str = "lmforge",
                 metrics: list[str] | None = None) -> dict[str, object]:
    """Compare runs; returns the table rows, the figure paths and the compare run id."""
    if len(run_ids) < 2:
        raise ValueError("compare needs at least two run ids")
    client = MlflowClient(tracking_uri())
    views = [collect(client, r) for r in run_ids]
    rows = table_rows(views, metrics)
    figures = plot_curves(views, out)
    bars = plot_metrics(views, metrics or list(DEFAULT_BARS), out)
    if bars:
        figures.append(bars)
    table = out / "comparison.md"
    write_text(table, markdown(rows))
    with tracked_run("compare", experiment, tags={"lmforge.compared": ",".join(run_ids)}) as t:
        for path in [table, *figures]:
            t.log_artifact(path, "compare")
        compare_run = t.run_id
    create_table_artifact(rows, key="compare-runs", description="Params that differ and "
                          "metrics, one column per run")
    create_markdown_artifact(markdown(rows), key="compare-table")
    return {"rows": rows, "figures": [str(f) for f in figures], "table": str(table),
            "mlflow_run_id": compare_run}
