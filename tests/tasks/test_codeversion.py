"""Cache keys follow the code: an edit reruns exactly the steps whose code changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lmforge.infra.settings import SAMPLE_DIR
from lmforge.tasks import codeversion
from lmforge.tasks.codeversion import code_version, module_closure
from lmforge.tasks.curate import CurateConfig, curate_in_process
from lmforge.tasks.readers import Source
from lmforge.tasks.shards import Layout
from pydantic import TypeAdapter

SOURCES = TypeAdapter(list[Source]).validate_python([
    {"kind": "wikipedia", "paths": [f"{SAMPLE_DIR}/wikipedia/*articles1.xml.bz2"]},
    {"kind": "books", "paths": [f"{SAMPLE_DIR}/books/*.txt"]},
])
CFG = CurateConfig.model_validate({"pii": {"ner_model": None}})


def _redirect(monkeypatch: pytest.MonkeyPatch, module: str, path: Path) -> None:
    real = codeversion._module_file
    monkeypatch.setattr(codeversion, "_module_file",
                        lambda name: path if name == module else real(name))


def test_closure_follows_imports_of_lmforge_only() -> None:
    closure = module_closure(["lmforge.tasks.readers.wikipedia"])
    assert {"lmforge.tasks.readers.wikitext", "lmforge.tasks.readers.wiki_templates",
            "lmforge.tasks.readers.base", "lmforge.tasks.schema"} <= set(closure)
    assert "lmforge.tasks.pii" not in closure and not any(m.startswith("mwparser") for m in closure)
    with pytest.raises(ValueError, match="no such lmforge module"):
        code_version(["lmforge.tasks.nonexistent"])


def test_comments_and_docstrings_do_not_count(monkeypatch, tmp_path) -> None:
    source = Path(codeversion._module_file("lmforge.tasks.chunks")).read_text()
    before = code_version(["lmforge.tasks.chunks"])
    copy = tmp_path / "chunks.py"
    copy.write_text(source.replace('"""Bounded pieces', '"""Edited docs. Bounded pieces')
                    + "\n# a new comment\n")
    _redirect(monkeypatch, "lmforge.tasks.chunks", copy)
    assert code_version(["lmforge.tasks.chunks"]) == before
    copy.write_text(source.replace("max_chars // 2", "max_chars // 3"))
    assert code_version(["lmforge.tasks.chunks"]) != before
    chunks = ["lmforge.tasks.chunks"]
    assert code_version(chunks, ["pyarrow"]) != code_version(chunks)


def _stamps(root: Path) -> dict[str, int]:
    reports = Layout(root).root / "_work" / "reports"
    return {str(p.relative_to(reports)): p.stat().st_mtime_ns for p in reports.rglob("*.json")}


def test_an_edited_rule_reruns_exactly_its_stage(monkeypatch, tmp_path) -> None:
    curate_in_process(SOURCES, CFG, tmp_path)
    first = _stamps(tmp_path)
    curate_in_process(SOURCES, CFG, tmp_path)
    assert _stamps(tmp_path) == first  # nothing changed: everything reused

    edited = tmp_path / "pii.py"  # a real change of the PII step's code
    edited.write_text(Path(codeversion._module_file("lmforge.tasks.pii")).read_text().replace(
        "def _digits(text: str) -> int:\n", "def _digits(text: str) -> int:\n    _ = 0\n"))
    _redirect(monkeypatch, "lmforge.tasks.pii", edited)
    curate_in_process(SOURCES, CFG, tmp_path)
    after = _stamps(tmp_path)
    rerun = sorted({k.split("/")[0] for k in first if after[k] != first[k]})
    assert rerun == ["classifier", "pii", "toxicity"]  # the one per-shard scrub step

    edited = tmp_path / "wikitext.py"  # a change of the Wikipedia reader only
    edited.write_text(Path(codeversion._module_file("lmforge.tasks.readers.wikitext")).read_text()
                      .replace("def _clean_group(", "_EDITED = 1\n\n\ndef _clean_group("))
    _redirect(monkeypatch, "lmforge.tasks.readers.wikitext", edited)
    before = _stamps(tmp_path)
    curate_in_process(SOURCES, CFG, tmp_path)
    after = _stamps(tmp_path)
    changed = sorted(k for k in before if after[k] != before[k])
    # the Wikipedia shard is re-read; the books shard keeps its ingest and quality outputs
    assert "ingest/part-00000.json" in changed and "ingest/part-00001.json" not in changed
    assert "quality/part-00001.json" not in changed
