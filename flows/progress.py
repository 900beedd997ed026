"""Progress of mapped tasks: a rich progress bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect.futures import PrefectFuture, as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)
R = TypeVar("R")


def _ui_progress(label: str) -> Callable[[float], None]:
    """A Prefect progress artifact (0-100 %) for the running flow; a no-op outside a flow."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return lambda _: None
    key = "progress-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    artifact = create_progress_artifact(0.0, key=key, description=f"Progress: {label}")
    return lambda share: update_progress_artifact(artifact, round(100 * share, 1))


def wait_all(futures: list[PrefectFuture[R]], label: str) -> list[R]:
    """Results in submission order; raises the first task failure. Progress shows as a bar on
    a terminal, log lines otherwise, and a progress artifact in the Prefect UI."""
    index = {id(f): i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    ui = _ui_progress(label.split(" ", maxsplit=1)[0])  # "filter 12 shards": progress-filter
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not sys.stderr.isatty(),
                  transient=False) as progress:
        bar = progress.add_task(label, total=len(futures))
        for done, future in enumerate(as_completed(futures), start=1):
            results[index[id(future)]] = future.result()
            progress.advance(bar)
            if done == len(futures) or done % max(1, len(futures) // 20) == 0:
                ui(done / len(futures))
            if not progress.console.is_terminal and (done == len(futures) or done % 10 == 0):
                log.info("%s: %d/%d done", label, done, len(futures))
    return results


@contextmanager
def step_progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A callback ``on_step(done)`` that moves a progress bar on a terminal to ``done``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not sys.stderr.isatty()) as progress:
        bar = progress.add_task(label, total=total)
        yield lambda done: progress.update(bar, completed=done)


def same_runner() -> Any:
    """A copy of the running flow's task runner (its Dask cluster) for a subflow: Prefect
    subflows otherwise fall back to a thread pool."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    ctx = FlowRunContext.get()
    return ctx.task_runner.duplicate() if ctx and ctx.task_runner else ThreadPoolTaskRunner()
