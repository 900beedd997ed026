from __future__ import annotations

import importlib
import pkgutil

import pytest
from lmforge.tasks.base import KEEP, DocFilter, DocRewriter, Rewrite, Verdict, run_steps
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document

from lmforge import tasks


class ShortFilter(DocFilter):
    name = "test"

    def __init__(self, *, min_chars: int) -> None:
        self.min_chars = min_chars

    def keep(self, doc: Document) -> Verdict:
        if len(doc.text) < self.min_chars:
            return Verdict.drop("too_short", chars=len(doc.text))
        return KEEP


class Upper(DocRewriter):
    name = "upper"

    def rewrite(self, doc: Document) -> Rewrite:
        lower = sum(c.islower() for c in doc.text)
        return Rewrite(doc.text.upper(), {"letters": lower} if lower else {})


class BatchRecorder(DocFilter):
    name = "batch"
    batch_size = 3

    def __init__(self) -> None:
        self.batches: list[int] = []

    def prepare(self, batch: list[Document]) -> None:
        self.batches.append(len(batch))

    def keep(self, doc: Document) -> Verdict:
        return KEEP


def _docs(texts: list[str], source: str = "books") -> list[Document]:
    return [Document.new(source, f"f#{i}", t) for i, t in enumerate(texts)]


def test_counts_and_rejects_are_kept_by_the_base() -> None:
    tally, rejected = Tally("quality"), []
    docs = _docs(["a", "long enough", "bb"]) + _docs(["x" * 20], source="reddit")
    kept = list(run_steps(docs, [ShortFilter(min_chars=5)], tally,
                          lambda d, r, v: rejected.append((d.id, r, dict(v)))))
    report = tally.report()
    assert [d.text for d in kept] == ["long enough", "x" * 20]
    books = report.sources["books"]
    assert (books.docs_in, books.docs_out, dict(books.dropped)) == (3, 1, {"test/too_short": 2})
    assert books.docs_in == books.docs_out + books.docs_dropped
    assert report.total.docs_in == report.total.docs_out + report.total.docs_dropped == 4
    assert rejected[0][1:] == ("test/too_short", {"chars": 1})


def test_rewriter_counts_changed_and_records_counts_in_meta() -> None:
    tally = Tally("pii")
    docs = list(run_steps(_docs(["abc", "ABC"]), [Upper()], tally, lambda *a: None))
    assert [d.text for d in docs] == ["ABC", "ABC"]
    assert tally.report().sources["books"].changed == 1
    assert docs[0].meta["upper"] == {"letters": 3}
    assert "upper" not in docs[1].meta  # nothing replaced, nothing recorded


def test_prepare_runs_once_per_batch() -> None:
    step = BatchRecorder()
    list(run_steps(_docs(["t"] * 7), [step], Tally("x"), lambda *a: None))
    assert step.batches == [3, 3, 1]


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_no_step_overrides_run() -> None:
    for mod in pkgutil.walk_packages(tasks.__path__, "lmforge.tasks."):
        importlib.import_module(mod.name)
    steps = _all_subclasses(DocFilter) | _all_subclasses(DocRewriter)
    assert len(steps) >= 10  # the rule classes were found
    offenders = [cls.__qualname__ for cls in steps if "run" in cls.__dict__]
    assert offenders == []


def test_verdict_drop_needs_reason() -> None:
    verdict = Verdict.drop("why", x=1)
    assert (verdict.keep, verdict.reason, dict(verdict.values)) == (False, "why", {"x": 1})
    with pytest.raises(TypeError):
        Verdict.drop()  # type: ignore[call-arg]
