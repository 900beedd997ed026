"""Base classes of every per-document step: filters decide, rewriters change text.

A subclass writes one method (``keep`` or ``rewrite``); all bookkeeping lives in ``run`` here, so
counts are kept once, the same way, for every rule: documents dropped per reason, documents
changed, seconds per step, and every dropped document handed to the stage's reject sink with its
reason and the measured values behind the decision. Subclasses must not override ``run`` (a test
checks this).

Steps that are cheaper on batches (a classifier, presidio's batch analyzer) set ``batch_size`` and
implement ``prepare(batch)``, which runs once per batch before ``keep``/``rewrite`` is called per
document; the decision itself stays per document.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, ClassVar, TypeVar, final

from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document
from pydantic import BaseModel, ConfigDict

R = TypeVar("R")

#: Receives every document a step removes: (document, "<step>/<rule>" reason, measured values).
RejectSink = Callable[[Document, str, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Keep a document, or drop it naming the rule that failed and what was measured."""

    keep: bool
    reason: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def drop(cls, reason: str, **values: Any) -> Verdict:
        return cls(False, reason, values)

    @classmethod
    def ok(cls, **values: Any) -> Verdict:
        """Keep, recording what was measured (shown by ``lmforge explain``)."""
        return cls(True, None, values)


KEEP = Verdict(True)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """New text of a document plus what was changed (e.g. PII entities replaced, by type)."""

    text: str
    counts: Mapping[str, int] = field(default_factory=dict)


class RuleParams(BaseModel):
    """A rule's parameters, declared once on the rule class: each field's default is the
    published value and its description cites where it comes from. The quality config's
    families are built from these models, never restated (``tasks.filters.quality``).

    ``None`` disables a threshold, ``False`` a switch; a rule whose ``switches`` are all off
    is left out of the chain (by default every field is a switch; shared settings such as the
    word tokenizer are not)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    switches: ClassVar[tuple[str, ...] | None] = None

    def active(self) -> bool:
        names = type(self).switches
        names = tuple(type(self).model_fields) if names is None else names
        return not names or any(_on(getattr(self, n)) for n in names)


def _on(value: Any) -> bool:
    """A switch is off when None, False or an empty mapping/list (no n-grams to check)."""
    if value is None or value is False:
        return False
    return not (isinstance(value, (dict, list, tuple)) and not value)


class Step(ABC):
    """Shared batching and timing of filters and rewriters."""

    name: ClassVar[str]
    batch_size: ClassVar[int] = 1
    Params: ClassVar[type[RuleParams]] = RuleParams

    def __init__(self, params: RuleParams | None = None, **values: Any) -> None:
        """Build from a params object or from its field values (``MyFilter(min_words=5)``)."""
        self.params = params if params is not None else self.Params(**values)

    def prepare(self, batch: list[Document]) -> None:  # noqa: B027 - optional hook
        """Precompute per-batch state (model scores) before the per-document call."""

    def _decided(self, docs: Iterable[Document], decide: Callable[[Document], R], tally: Tally
                 ) -> Iterator[tuple[Document, R]]:
        """(document, decision) pairs, batch by batch, timing ``prepare`` plus ``decide``."""
        it, seconds = iter(docs), 0.0
        while batch := list(islice(it, self.batch_size)):
            start = time.perf_counter()
            self.prepare(batch)
            decisions = [decide(doc) for doc in batch]
            seconds += time.perf_counter() - start
            yield from zip(batch, decisions, strict=True)
        tally.add_extra("step_seconds", {self.name: seconds})


class DocFilter(Step):
    """Keep or drop whole documents by one rule. Implement :meth:`keep` only."""

    @abstractmethod
    def keep(self, doc: Document) -> Verdict:
        """Decide on one document; thresholds come from the constructor, never literals here."""

    @final
    def run(self, docs: Iterable[Document], tally: Tally, reject: RejectSink) -> Iterator[Document]:
        for doc, verdict in self._decided(docs, self.keep, tally):
            if verdict.keep:
                yield doc
            else:
                reason = f"{self.name}/{verdict.reason}"
                tally.dropped(doc.source, reason)
                reject(doc, reason, verdict.values)


class DocRewriter(Step):
    """Change document text (PII scrubbing, span removal). Implement :meth:`rewrite` only."""

    @abstractmethod
    def rewrite(self, doc: Document) -> Rewrite:
        """Return the new text of ``doc`` and counts of what was replaced."""

    @final
    def run(self, docs: Iterable[Document], tally: Tally, reject: RejectSink) -> Iterator[Document]:
        del reject  # rewriters never drop documents
        for doc, new in self._decided(docs, self.rewrite, tally):
            if new.text != doc.text:
                tally.changed(doc.source)
                doc.text = new.text
            if new.counts:
                doc.meta[self.name] = dict(new.counts)
                tally.add_extra(self.name, {doc.source: dict(new.counts)})
            yield doc


def run_steps(
    docs: Iterable[Document],
    steps: Iterable[DocFilter | DocRewriter],
    tally: Tally,
    reject: RejectSink,
) -> Iterator[Document]:
    """Chain steps lazily, counting what enters and leaves the chain in ``tally``, and the
    time spent inside the chain alone in ``tally.busy``: waiting for the stage upstream
    and the consumer downstream is not counted, so stages fused into one pass over a shard
    each get their own seconds."""
    upstream = 0.0

    def entering(stream: Iterable[Document]) -> Iterator[Document]:
        nonlocal upstream
        it = iter(stream)
        while True:
            t = time.perf_counter()
            doc = next(it, None)
            upstream += time.perf_counter() - t
            if doc is None:
                return
            tally.seen(doc.source, doc.nbytes)
            yield doc

    stream: Iterable[Document] = entering(docs)
    for step in steps:
        stream = step.run(stream, tally, reject)
    chain, total, base = iter(stream), 0.0, tally.busy or 0.0
    while True:
        t = time.perf_counter()
        doc = next(chain, None)
        total += time.perf_counter() - t
        tally.busy = base + total - upstream
        if doc is None:
            return
        tally.kept(doc.source, doc.nbytes)
        yield doc

    stream: Iterable[Document] = entering(docs)
    for step in steps:
        stream = step.run(stream, tally, reject)
    for doc in stream:
        tally.kept(doc.source, doc.nbytes)
        yield doc
