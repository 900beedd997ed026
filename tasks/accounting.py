"""Accounting that cannot lie: every input file, every record, every document of a curation
run is somewhere, and the run checks it before it reports success.

* :func:`account_inputs`: an input file with bytes and nothing found in it (no document, no
  skipped record, no quarantined spot) is quarantined as ``<kind>/no_documents``, with what was
  seen, instead of vanishing (a dump in an encoding nobody read, a WARC of another format).
* :func:`reconcile`: per source, the records the readers produced equal the curated plus the
  rejected documents, *counted in the output files*; the quarantine rows equal the unreadable
  spots the readers counted; each stage receives what the one before it let through, and
  keeps or drops each document it receives. :class:`AccountingError` names any mismatch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.dataset as ds
from lmforge.tasks.report import SourceCounts, StageReport
from lmforge.tasks.shards import Layout, QuarantineWriter, list_shards

INPUTS_QUARANTINE = "inputs-part-00000.parquet"  # flow-level quarantine rows (one file)


class AccountingError(RuntimeError):
    """Documents or records of a run are not where its counts say they are."""


def _head(url: str, n: int = 48) -> str:
    """The first bytes of a file (decompressed when its name says it is compressed)."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        if fs.isdir(path):
            return f"a folder of {len(fs.find(path))} files"
        with fsspec.open(url, "rb", compression="infer") as fh:
            return f"starts with {fh.read(n)!r}"
    except (OSError, EOFError, ValueError) as err:
        return f"unreadable now: {err}"


def _seen(seen: Mapping[str, int]) -> str:
    return ", ".join(f"{what}: {n}" for what, n in sorted(seen.items())) or "nothing the " \
        "reader recognises"


def account_inputs(layout: Layout, ingest: StageReport) -> StageReport:
    """Quarantine the input files that yielded nothing; returns the ingest report with them
    counted. Rewritten on every run (a rerun that reads them finally leaves no stale rows)."""
    inputs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in
                                         ingest.extra.get("inputs", {}).items()}
    empty = [url for url, row in sorted(inputs.items())
             if row["bytes"] > 0 and not (row["documents"] or row["skipped"]
                                          or row["quarantined"])]
    with QuarantineWriter(layout.quarantine / INPUTS_QUARANTINE) as quarantine:
        for url in empty:
            row = inputs[url]
            quarantine(row["source"], url, f"{row['source']}/no_documents", detail=(
                f"{row['bytes']} bytes in {row['partitions']} partition(s), no document; "
                f"seen {_seen(row.get('seen', {}))}; {_head(url)}"))
            row["quarantined"] += 1
    return StageReport(stage=ingest.stage, sources=ingest.sources, seconds=ingest.seconds,
                       shards=ingest.shards, quarantined=ingest.quarantined + len(empty),
                       extra={**ingest.extra, "inputs": inputs})


def inputs_table(ingest: StageReport) -> list[dict[str, Any]]:
    """One row per input file: what was read from it and what became of its records."""
    return [{"file": url, **row} for url, row in sorted(ingest.extra.get("inputs", {}).items())]


def _rows_by_source(files: Sequence[Path]) -> Counter[str]:
    if not files:
        return Counter()
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=["source"])
    return Counter(table.column("source").to_pylist())


def _output_files(folder: Path) -> list[Path]:
    return list_shards(folder) + [p for p in sorted(folder.glob("*-part-*.parquet"))
                                  if not p.name.startswith(".")]


def _chain_problems(reports: Sequence[StageReport]) -> list[str]:
    problems = []
    for report in reports:
        for source, c in report.sources.items():
            if c.docs_in != c.docs_out + c.docs_dropped:
                problems.append(f"{report.stage}/{source}: {c.docs_in} in != {c.docs_out} "
                                f"kept + {c.docs_dropped} dropped")
    for before, after in pairwise(reports):
        for source in set(before.sources) | set(after.sources):
            out = before.sources.get(source, SourceCounts()).docs_out
            got = after.sources.get(source, SourceCounts()).docs_in
            if out != got:
                problems.append(f"{source}: {before.stage} passed on {out} documents, "
                                f"{after.stage} received {got}")
    return problems


def reconcile(layout: Layout, reports: Sequence[StageReport]) -> dict[str, Any]:
    """Per-source accounting of the run, from its reports and its output files; ``ok`` is
    False (and ``problems`` says why) when anything does not add up."""
    ingest = reports[0]
    curated = _rows_by_source(list_shards(layout.curated))
    rejected = _rows_by_source(_output_files(layout.rejected))
    quarantine_rows = _rows_by_source(_output_files(layout.quarantine))
    counted: Counter[str] = Counter()
    for row in ingest.extra.get("inputs", {}).values():
        counted[row["source"]] += row["quarantined"]
    per_source: dict[str, dict[str, Any]] = {}
    problems = _chain_problems(reports)
    for source in sorted(set(ingest.sources) | set(counted) | set(quarantine_rows)):
        read = ingest.sources.get(source, SourceCounts()).docs_in
        row = {"read": read, "curated": curated[source], "rejected": rejected[source],
               "quarantined_counted": counted[source],
               "quarantined_rows": quarantine_rows[source]}
        row["ok"] = (read == row["curated"] + row["rejected"]
                     and row["quarantined_counted"] == row["quarantined_rows"])
        if read != row["curated"] + row["rejected"]:
            problems.append(f"{source}: {read} records read != {row['curated']} curated + "
                            f"{row['rejected']} rejected in the output files")
        if row["quarantined_counted"] != row["quarantined_rows"]:
            problems.append(f"{source}: {row['quarantined_counted']} records counted as "
                            f"unreadable != {row['quarantined_rows']} quarantine rows")
        per_source[source] = row
    return {"ok": not problems, "sources": per_source, "problems": problems}


def check(accounting: Mapping[str, Any]) -> None:
    """Fail loudly when :func:`reconcile` found a mismatch."""
    if not accounting["ok"]:
        raise AccountingError("curation accounting does not add up (see manifest.json "
                              "'accounting'):\n  " + "\n  ".join(accounting["problems"]))
