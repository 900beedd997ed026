"""Progress of mapped tasks: a rich progress bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect.futures import PrefectFuture, as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger(__name__)
R = TypeVar("R")


def wait_all(futures: list[PrefectFuture[R]], label: str) -> list[R]:
    """Results in submission order; raises the first task failure."""
    index = {id(f): i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not sys.stderr.isatty(),
                  transient=False) as progress:
        bar = progress.add_task(label, total=len(futures))
        for done, future in enumerate(as_completed(futures), start=1):
            results[index[id(future)]] = future.result()
            progress.advance(bar)
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
