"""What the ``lmforge`` command shows: its two consoles (results and links on stdout, messages
on stderr), which log lines reach the terminal, and how results are rendered."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from lmforge.flows.launch import Endpoints
    from lmforge.tasks.explain import Explanation

console = Console(stderr=True)
out = Console(soft_wrap=True)  # results and links on stdout, never wrapped mid-URL

# What the terminal shows without --verbose: lmforge's own lines and every warning; the INFO
# chatter of Dask, Prefect's console (the UI keeps every log: its API handler is untouched) and
# MLflow goes nowhere. Set before those libraries are imported, and inherited by the Dask
# workers the command starts.
QUIET_ENV = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
             "MLFLOW_LOGGING_LEVEL": "WARNING",  # MLflow configures its own handler
             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
             "DASK_LOGGING__DISTRIBUTED": "warning",
             "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "warning"}
QUIET_LOGGERS = {"distributed": logging.WARNING, "mlflow": logging.WARNING,
                 "tornado": logging.WARNING, "asyncio": logging.WARNING,
                 # "Shuffle ... initialized by task": one per Dask shuffle, 28 per sample run
                 "distributed.shuffle": logging.ERROR,
                 # torchao (imported by peft when installed) reports the CUDA kernels a CPU
                 # install lacks and torch's pytree deprecation of its enums, at import
                 "torchao": logging.ERROR, "torch.utils._pytree": logging.ERROR}


class _OwnInfo(logging.Filter):
    """INFO lines of lmforge's own loggers, warnings and errors of everyone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] == "flows"


def setup_logging(verbose: bool) -> None:
    import warnings

    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False)
    if not verbose:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        for name, level in QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
        handler.addFilter(_OwnInfo())
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        warnings.filterwarnings("ignore", module="mlflow")  # advice on signatures, examples
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)
    logging.getLogger("flows").setLevel(logging.INFO)


def print_links(endpoints: Endpoints, flow_run_id: Any, result: Any) -> None:
    out.print(f"Prefect flow run:  {endpoints.prefect_ui}/runs/flow-run/{flow_run_id}")
    if isinstance(result, dict):
        if result.get("dask_dashboard"):
            out.print(f"Dask dashboard:    {result['dask_dashboard']} (while the run lasted)")
        if result.get("mlflow_url"):
            out.print(f"MLflow run:        {result['mlflow_url']}")
    if endpoints.prefect_temporary or not endpoints.mlflow_uri.startswith("http"):
        out.print("These links show the run once `lmforge services up` is running (the run "
                  "was recorded in the same databases).")


def print_accounting(manifest: Path) -> None:
    """Where every record went, per source (the manifest's ``accounting``), what each stage
    removed, and what was quarantined and where it is."""
    import json

    data = json.loads(manifest.read_text())
    for source, row in data.get("accounting", {}).get("sources", {}).items():
        quarantined = (f", [yellow]{row['quarantined_rows']} quarantined[/yellow]"
                       if row["quarantined_rows"] else "")
        out.print(f"  {source:<12} {row['read']} read = {row['curated']} curated + "
                  f"{row['rejected']} rejected{quarantined}")
    removed = {stage: sum(r.get("dropped", {}).values())
               for stage, r in data.get("stages", {}).items()}
    if any(removed.values()):
        out.print("  rejected by stage: " + ", ".join(f"{stage} {n}" for stage, n in
                                                      removed.items() if n))
    ingest = data.get("stages", {}).get("ingest", {}).get("extra", {})
    if reused := ingest.get("shards_reused", 0):
        shards = reused + ingest.get("shards_run", 0)
        out.print(f"  resumed: {reused} of {shards} shards reused from an earlier run "
                  "(same inputs, config and code), the rest computed")
    records = data.get("outputs", {}).get("quarantine", {}).get("records", 0)
    if records:
        out.print(f"  [yellow]{records} unreadable records quarantined[/yellow] (reason and "
                  f"place of each): {manifest.parent / 'quarantine'}")


def print_rows(rows: list[dict[str, str]], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in rows[0] if rows else ["name"]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)


def print_explanation(result: Explanation) -> None:
    """``lmforge explain``: the verdict, every rule with its measured values, and what the
    later stages did (toxic passages with their scores)."""
    from rich.table import Table

    out.print(f"{result.doc_id}: {result.status.upper()}"
              + (f" by {result.reason}" if result.reason else "")
              + (f"  ({result.source}, {result.location})" if result.source else ""))
    if result.rules:
        table = Table("rule", "result", "measured")
        for rule in result.rules:
            table.add_row(rule.rule, "pass" if rule.passed else "[red]FAIL[/red]",
                          ", ".join(f"{k}={v}" for k, v in rule.values.items()))
        out.print(table)
    for key, value in result.later.items():
        if key == "toxicity" and "passages" in value:
            out.print(f"toxicity ({value['mode']}): {value['toxic_units']} units over "
                      f"{value['thresholds']}, {value['toxic_share']:.1%} of the text "
                      f"(documents over {value['max_toxic_share']} are dropped)")
            for p in value["passages"]:
                text = " ".join(p["text"].split())
                out.print(f"  {p['score']:.3f} [{p['start']}:{p['end']}] "
                          f"{text[:300]}{'…' if len(text) > 300 else ''}", markup=False)
            continue
        out.print(f"{key}: {value}")
