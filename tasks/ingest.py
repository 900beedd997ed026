"""Incremental ingest: a ledger of every input file already processed (with its checksum), the
selection of new inputs from a landing area, and the publication of a curated batch as a new
dataset version.

Layout under the output folder::

    ingest/versions/v00001.json     dataset version 1: its inputs (the ledger) and every curated
                                    shard up to that batch; written last, the batch's commit
    ingest/ledger.jsonl             every processed input (url, checksum, size, batch), a view
                                    of the versions rewritten after each commit
    ingest/batches/00001/           a normal curate output (curated/, rejected/, manifest.json)
    ingest/dedup-index/             the dedup index every batch is deduped against
    curated/part-N.parquet          links to the batches' shards, numbered across batches
    manifest.json                   the current version (what `tokenize` reads)

An input is new when its URL is not in the ledger or its checksum changed. Local files are
checksummed by content (SHA-256); remote objects and code trees by size and modification
time/ETag. A batch counts as processed only once its version file exists, so a crashed batch
is simply redone by the next run (its documents already in the dedup index are recognised by
id, not dropped as duplicates of themselves).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmforge.model.atomic import atomic_path, write_text
from lmforge.tasks.readers import SOURCES
from lmforge.tasks.readers.base import SourceBase, expand_paths, fingerprint
from lmforge.tasks.shards import file_digest, list_shards, shard_name


@dataclass(frozen=True)
class Entry:
    url: str
    checksum: str
    size: int
    source_index: int
    batch: int = 0


def checksum(url: str, info: dict[str, Any]) -> str:
    """Content SHA-256 of a local file; size + mtime/ETag of a remote object or a tree."""
    if info.get("type") == "file" and url.startswith(("file://", "/")):
        return "sha256:" + file_digest(Path(url.removeprefix("file://")))
    if info.get("type") == "directory":
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        files = sorted(fs.find(path, detail=True).items())
        blob = json.dumps([(p, fingerprint(i)) for p, i in files])
        return "tree:" + hashlib.sha256(blob.encode()).hexdigest()
    return "stamp:" + fingerprint(info)


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root / "ingest"
        self.path = self.root / "ledger.jsonl"

    def versions(self) -> list[Path]:
        return sorted((self.root / "versions").glob("v*.json"))

    def entries(self) -> list[Entry]:
        """Every input of every committed batch."""
        return [Entry(**e) for v in self.versions()
                for e in json.loads(v.read_text()).get("inputs", [])]

    @property
    def batch(self) -> int:
        """The newest published batch (0: none yet)."""
        versions = self.versions()
        return int(versions[-1].stem[1:]) if versions else 0

    def new_inputs(self, sources: Sequence[SourceBase]) -> list[Entry]:
        """Inputs of the configured sources not processed before (or changed since)."""
        seen = {(e.url, e.checksum) for e in self.entries()}
        new = []
        for index, source in enumerate(sources):
            folders = SOURCES[source.kind].reads_folders  # type: ignore[attr-defined]
            for pattern in source.paths:
                for url, _, info in expand_paths(pattern, want_dirs=folders):
                    if info["type"] == "directory" and not folders:
                        continue
                    entry = Entry(url, checksum(url, dict(info)), int(info.get("size") or 0),
                                  index)
                    if (entry.url, entry.checksum) not in seen:
                        seen.add((entry.url, entry.checksum))
                        new.append(entry)
        return new

    def write_view(self) -> None:
        """``ledger.jsonl``: the committed inputs, one per line (for people and tools)."""
        _write(self.path, "".join(json.dumps(asdict(e)) + "\n" for e in self.entries()))


def batch_sources(sources: Sequence[SourceBase], entries: Sequence[Entry]) -> list[SourceBase]:
    """The configured sources restricted to the new inputs (sources without any are dropped)."""
    out = []
    for index, source in enumerate(sources):
        urls = [e.url for e in entries if e.source_index == index]
        if urls:
            out.append(source.model_copy(update={"paths": urls}))
    return out


def _write(path: Path, text: str) -> None:
    write_text(path, text)


def _link(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem: copy
            shutil.copyfile(src, tmp)


def publish_version(root: Path, batch_root: Path, batch: int, inputs: Sequence[Entry]
                    ) -> dict[str, Any]:
    """Add the batch's curated shards to ``root/curated`` (numbered after the existing ones)
    and commit dataset version ``batch``: the previous version's shards plus the new ones,
    and the batch's inputs. Rerunning after a crash before the commit overwrites the same
    shard numbers."""
    ledger = Ledger(root)
    previous = ledger.batch
    prior: dict[str, Any] = (json.loads((ledger.root / "versions" / f"v{previous:05d}.json")
                                        .read_text()) if previous else {"shards": []})
    curated = root / "curated"
    curated.mkdir(parents=True, exist_ok=True)
    shards = list(prior["shards"])
    batch_manifest = json.loads((batch_root / "manifest.json").read_text())
    for src in list_shards(batch_root / "curated"):
        dst = curated / shard_name(len(shards))
        _link(src, dst)
        shards.append({"file": str(dst.relative_to(root)), "batch": batch,
                       "from": str(src.relative_to(root)), "sha256": file_digest(dst)})
    documents = prior.get("documents", 0) + batch_manifest["outputs"]["curated"]["documents"]
    version = {"version": batch, "created": time.time(), "shards": shards,
               "documents": documents,
               "inputs": [{**asdict(e), "batch": batch} for e in inputs],
               "batches": [*prior.get("batches", []), {
                   "batch": batch, "manifest": str((batch_root / "manifest.json")
                                                   .relative_to(root)),
                   "documents": batch_manifest["outputs"]["curated"]["documents"]}]}
    _write(ledger.root / "versions" / f"v{batch:05d}.json", json.dumps(version, indent=1))
    _write(root / "manifest.json", json.dumps({
        **{k: v for k, v in version.items() if k != "inputs"},
        "outputs": {"curated": {"documents": documents, "shards": len(shards)}}}, indent=1))
    ledger.write_view()
    return version


def version_shards(root: Path, version: int) -> tuple[list[Path], str]:
    """The curated shards of committed dataset version ``version``, each checked against the
    SHA-256 recorded at the commit, and the version's digest (its record without the time)."""
    versions = Ledger(root).root / "versions"
    path = versions / f"v{version:05d}.json"
    if not path.exists():
        have = sorted(int(p.stem[1:]) for p in versions.glob("v*.json"))
        raise FileNotFoundError(f"dataset.curated_version={version}: no such dataset version "
                                f"under {versions} (committed: {have or 'none'})")
    record = json.loads(path.read_text())
    shards = []
    for entry in record["shards"]:
        shard = root / entry["file"]
        if not shard.exists() or file_digest(shard) != entry["sha256"]:
            raise ValueError(f"dataset.curated_version={version}: {shard} is missing or "
                             "differs from the shard committed in that version")
        shards.append(shard)
    body = json.dumps({k: v for k, v in record.items() if k != "created"}, sort_keys=True)
    return shards, hashlib.sha256(body.encode()).hexdigest()[:16]
