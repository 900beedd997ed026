"""The ``lmforge`` command.

    lmforge run [--config FILE] [--output DIR]     the whole pipeline (default: embedded sample)
    lmforge curate|tokenize|train|evaluate ...     one stage
    lmforge finetune (sft) -c FILE                 fine-tune the trained model, register @sft
    lmforge align -c FILE [--objective ...]        DPO, reward model, PPO or safety tuning
    lmforge services up|down|status                local Prefect + MLflow servers, a worker
    lmforge ingest -c FILE -o DIR                  new landing-area inputs -> dataset version
    lmforge deploy -c FILE -o DIR                  nightly ingest + weekly train deployments
    lmforge compare RUN RUN...                     side-by-side table and plots of MLflow runs
    lmforge ablate [--config A] [--against B]      curated vs uncurated (or A vs B), same budget
    lmforge config [--config FILE]                 validate and print the resolved config
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from lmforge.flows.cli_run import load, run_flow
from lmforge.flows.terminal import (
    console,
    out,
    print_accounting,
    print_explanation,
    print_rows,
    setup_logging,
)
from lmforge.infra.settings import prepare_environment
from rich.markup import escape

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lmforge: curate corpora, train and evaluate language models.")
services_app = typer.Typer(no_args_is_help=True, help="Local Prefect and MLflow servers and a "
                           "Prefect worker.")
app.add_typer(services_app, name="services")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="pipeline YAML; "
                                                "default: the embedded sample")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="output folder "
                                                "(overrides the config's `output`)")]


def _version(value: bool) -> None:
    if value:
        from lmforge import __version__

        typer.echo(f"lmforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")]
         = False) -> None:
    """lmforge: curate corpora, train and evaluate language models."""


@app.command()
def run(config: ConfigOpt = None, output: OutputOpt = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Curate → tokenize → train → evaluate (the embedded sample when no --config is given)."""
    setup_logging(verbose)
    from lmforge.flows.pipeline import run_pipeline

    cfg = load(config, output, inputs=True, finetune=True)
    result = run_flow(run_pipeline, cfg)
    metrics = result["metrics"]
    out.print(f"Curated shards:    {cfg.output.resolve() / 'curated'}")
    out.print(f"Manifest:          {result['manifest']}")
    print_accounting(Path(result["manifest"]))
    out.print(f"Model:             {result['checkpoint']}")
    if tuned := result.get("finetuned"):
        out.print(f"Fine-tuned model:  {tuned['model']} (registered {tuned['registered']})")
    out.print(f"Validation:        loss {metrics['loss']:.3f}, perplexity "
                  f"{metrics['perplexity']:.1f}, {metrics.get('bits_per_byte', float('nan')):.3f}"
                  " bits/byte")


@app.command()
def curate(config: ConfigOpt = None, output: OutputOpt = None,
           verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Curate the configured sources into DIR/curated (Parquet)."""
    setup_logging(verbose)
    from lmforge.flows.curate import curate_corpus

    manifest = run_flow(curate_corpus, load(config, output, inputs=True), dask=True)
    out.print(f"Manifest:          {manifest}")
    print_accounting(Path(manifest))


@app.command()
def tokenize(config: ConfigOpt = None, output: OutputOpt = None,
             verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Train the tokenizer and pack DIR/curated into DIR/tokens."""
    setup_logging(verbose)
    from lmforge.flows.tokens import tokenize_corpus

    manifest = run_flow(tokenize_corpus, load(config, output, inputs=False), dask=True)
    out.print(f"Token dataset:     {manifest}")


@app.command()
def train(config: ConfigOpt = None, output: OutputOpt = None,
          verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Train the configured model on DIR/tokens."""
    setup_logging(verbose)
    from lmforge.flows.train import train_model

    checkpoint = run_flow(train_model, load(config, output, inputs=False))
    out.print(f"Model:             {checkpoint}")


# the tuning commands (finetune / sft, align) live in flows/cli_tune.py
from lmforge.flows import cli_models, cli_tune  # noqa: E402

app.command()(cli_tune.finetune)
app.command("sft", help="Alias of finetune.")(cli_tune.finetune)
app.command()(cli_tune.align)
app.command()(cli_tune.compress)
app.command()(cli_models.export)
app.command("import-hf")(cli_models.import_hf)
app.command()(cli_models.serve)


@app.command()
def evaluate(config: ConfigOpt = None, output: OutputOpt = None,
             checkpoint: Annotated[Path | None, typer.Option(
                 help="one model.pt or checkpoint folder (default: DIR/model)")]
             = None,
             verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Evaluate the trained model (and its checkpoints with evaluate.checkpoints: all):
    held-out perplexity per source, the configured tasks, the security probes."""
    setup_logging(verbose)
    from lmforge.flows.evaluate import evaluate_model

    metrics = run_flow(evaluate_model, load(config, output, inputs=False), checkpoint,
                       dask=True)
    for key, value in metrics.items():
        out.print(f"{key:>16}: {value:.4f}")


@app.command()
def ingest(config: ConfigOpt = None, output: OutputOpt = None,
           verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Curate only the inputs not processed before (ledger of checksums), dedup them against
    every earlier batch, and publish a new dataset version."""
    setup_logging(verbose)
    from lmforge.flows.ingest import ingest_new
    from lmforge.tasks.ingest import Ledger

    cfg = load(config, output, inputs=True)
    new = Ledger(cfg.output.resolve()).new_inputs(cfg.sources)
    result = run_flow(ingest_new, cfg, None, new, dask=bool(new))  # no cluster for nothing
    if result["new_inputs"] == 0:
        out.print(f"Nothing new: dataset version {result['version']} is current.")
    else:
        out.print(f"Dataset version {result['version']}: {result['new_inputs']} new inputs, "
                  f"{result['documents']} documents added ({result['total_documents']} in all)")


@app.command("cluster-spec")
def cluster_spec(config: ConfigOpt = None) -> None:
    """Print what the config's dask section starts: the DaskCluster manifest (kind
    kubernetes, for `kubectl apply -f -`) or the SLURM job script (kind slurm)."""
    cfg = load(config, None)
    import yaml
    from lmforge.infra.cluster import kube_cluster_spec, slurm_cluster

    if cfg.dask.kind == "kubernetes":
        out.print(yaml.safe_dump(kube_cluster_spec(cfg.dask), sort_keys=False), end="")
    elif cfg.dask.kind == "slurm":
        with slurm_cluster(cfg.dask) as cluster:
            out.print(cluster.job_script(), end="")
    else:
        console.print(f"dask.kind is {cfg.dask.kind!r}: nothing to print (kubernetes or slurm)")
        raise typer.Exit(1)


@app.command()
def deploy(config: Annotated[Path, typer.Option("--config", "-c", help="pipeline YAML the "
                                                "scheduled runs read")],
           output: OutputOpt = None,
           only: Annotated[list[str] | None, typer.Option(help="deploy only these")] = None
           ) -> None:
    """Register the scheduled deployments (nightly ingest, weekly train + evaluate, curate on
    demand) in the `lmforge` work pool of the running Prefect server."""
    setup_logging(False)
    load(config, output)  # validate before registering anything
    from lmforge.flows.deploy import SCHEDULES, deploy_all
    from lmforge.flows.launch import platform
    from lmforge.infra import services

    up = services.running()
    if "prefect" not in up and not os.environ.get("PREFECT_API_URL"):
        console.print("[red]no Prefect server: start one with `lmforge services up` (or set "
                      "PREFECT_API_URL) so the deployments persist[/red]")
        raise typer.Exit(1)
    with platform() as endpoints:
        ids = deploy_all(config, output, only=tuple(only) if only else None)
    crons = {s.name: s.cron for s in SCHEDULES}
    for name, deployment_id in ids.items():
        out.print(f"{name:>16}: {crons[name] or 'on demand':<12} "
                  f"{endpoints.prefect_ui}/deployments/deployment/{deployment_id}")
    if "worker" not in up:
        out.print("No local worker: `lmforge services up` starts one (or run `prefect worker "
                  "start --pool lmforge` where the runs should execute).")


@app.command()
def compare(run_ids: Annotated[list[str], typer.Argument(help="MLflow run ids (two or more)")],
            output: Annotated[Path, typer.Option("--output", "-o", help="folder of the table "
                                                 "and PNG plots")] = Path("lmforge-compare"),
            metric: Annotated[list[str] | None, typer.Option(
                "--metric", "-m", help="metrics to show (default: all)")] = None,
            experiment: Annotated[str, typer.Option(help="experiment of the compare run")]
            = "lmforge") -> None:
    """Compare runs: params that differ, metrics, loss curves and metric bars (PNG, also
    logged to MLflow)."""
    setup_logging(False)
    from lmforge.flows.compare import compare_runs
    from lmforge.flows.launch import platform

    prepare_environment()
    with platform() as endpoints:
        state = compare_runs(run_ids, output.resolve(), experiment, metric or None,
                             return_state=True)
        result = state.result(raise_on_failure=False)
        out.print(f"Prefect flow run:  {endpoints.prefect_ui}/runs/flow-run/"
                  f"{state.state_details.flow_run_id}")
    if state.is_failed():
        console.print(f"[red]{state.name}: {escape(str(result))}[/red]")  # brackets in errors
        raise typer.Exit(1)
    print_rows(result["rows"], "lmforge compare")
    for figure in result["figures"]:
        out.print(f"Figure:            {figure}")
    out.print(f"Table:             {result['table']}")
    out.print(f"MLflow compare run: {result['mlflow_run_id']}")


@app.command()
def ablate(config: ConfigOpt = None, output: OutputOpt = None,
           against: Annotated[Path | None, typer.Option(
               help="config of arm B (default: arm A with every curation stage off)")] = None,
           verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Train the same model on the same token budget twice (curated vs uncurated data, or
    two curation configs) and report what the data did."""
    setup_logging(verbose)
    from lmforge.flows.ablation import run_ablation

    cfg = load(config, output, inputs=True)
    other = load(against, None, inputs=True) if against else None
    names = ("a", "b") if against else ("curated", "uncurated")
    result = run_flow(run_ablation, cfg, other, names)
    print_rows(result["rows"], "lmforge ablate")
    if result.get("figure"):
        out.print(f"Figure:            {result['figure']}")


@app.command("config")
def show_config(config: ConfigOpt = None, output: OutputOpt = None) -> None:
    """Validate a config and print it with every default filled in."""
    import yaml

    cfg = load(config, output)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@services_app.command("up")
def services_up(prefect_port: int = 4200, mlflow_port: int = 5000) -> None:
    """Start the Prefect and MLflow servers and a worker of the `lmforge` work pool in the
    background (state in $LMFORGE_HOME)."""
    from lmforge.infra import services

    prepare_environment()
    with console.status("starting Prefect and MLflow servers"):
        try:
            running = services.up(prefect_port=prefect_port, mlflow_port=mlflow_port)
        except RuntimeError as err:
            console.print(f"[red]{err}[/red]")
            raise typer.Exit(1) from None
    for name, svc in running.items():
        out.print(f"{name:>8}: {svc.url}  (pid {svc.pid})")


@services_app.command("down")
def services_down() -> None:
    """Stop the servers started by `services up`."""
    from lmforge.infra import services

    stopped = services.down()
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status() -> None:
    """Show which servers are up and their URLs."""
    from lmforge.infra import services

    recorded, running = services.recorded(), services.running()
    if not recorded:
        out.print("no services recorded; start them with `lmforge services up`")
    for name, svc in recorded.items():
        out.print(f"{name:>8}: {'up  ' if name in running else 'DOWN'} {svc.url}")
    raise typer.Exit(0 if recorded and len(running) == len(recorded) else 1)


@app.command()
def explain(doc_id: Annotated[str, typer.Argument(help="a document id from curated/ or "
                                                  "rejected/")],
            output: Annotated[Path, typer.Option("--output", "-o", help="the run's output "
                                                 "folder")] = Path("lmforge-out")) -> None:
    """Why one document was kept or removed: every rule of its source, with measured values."""
    prepare_environment()
    from lmforge.tasks.explain import explain as explain_doc

    saved = output / "config.yaml"
    if not saved.exists():
        console.print(f"[red]{saved} not found: run `lmforge curate -o {output}` first[/red]")
        raise typer.Exit(2)
    cfg = load(saved, None)
    result = explain_doc(output, doc_id, cfg.sources, cfg.curate)
    print_explanation(result)
    if result.status == "not found":
        raise typer.Exit(1)
