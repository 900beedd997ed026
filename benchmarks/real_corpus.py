"""Curation of real files nobody here wrote, with the default configuration, and the checks a
careful reader of the output would make.

    python -m benchmarks.real_corpus [--cache DIR] [--out DIR]

The inputs are fetched by package name (``infra/real_corpora.py``: the gensim wheel's
Wikipedia excerpts, pywb's WARCs, Debian's Austen and Moby-Dick, CPython's standard library,
the pip, pywb and trafilatura sdists), plus one 20 MB web page made of real parts (pip's and
Moby-Dick's first chapters as its text, pywb's inline JavaScript and CSS as its bulk). Prints per
source the files, documents in and out, removals per rule and seconds; the Wikipedia text
against the baseline a user would write without lmforge (mwparserfromhell's ``strip_code``
after dropping refs, tables and file links, as the HF ``wikipedia`` builder does); and the
table of checks, which ``tests/real/test_real_corpus.py`` asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from lmforge.infra.real_corpora import default_cache, fetch
from lmforge.infra.settings import prepare_environment
from lmforge.tasks.curate import CurateConfig, curate_in_process
from lmforge.tasks.readers import Source, plan_shards
from lmforge.tasks.report import StageReport
from lmforge.tasks.shards import Layout
from pydantic import TypeAdapter

LARGE_PAGE_BYTES = 20_000_000
# Wikitext debris in curated text. A line with TeX commands is a formula kept on purpose.
DEBRIS = {"table": r"\{\|", "link": r"\[\[", "template": r"\{\{", "ref": r"<ref",
          "empty_parentheses": r"\(\s*[,;:]*\s*\)", "empty_list_item": r"^\s*[-*#:;]\s*$",
          "separator_after_parenthesis": r"\(\s*[,;]"}
_TEX = re.compile(r"\\[A-Za-z]+")


def real_sources(cache: Path, extra_warcs: Iterable[Path] = ()) -> list[Any]:
    """The real corpora as curate sources, each kind with its default settings."""
    return TypeAdapter(list[Source]).validate_python([
        {"kind": "wikipedia", "paths": [str(cache / "wikipedia" / "*.bz2")]},
        {"kind": "commoncrawl", "paths": [str(cache / "commoncrawl" / "*"),
                                          *map(str, extra_warcs)]},
        {"kind": "books", "paths": [str(cache / "books" / "*.txt")]},
        {"kind": "code", "paths": [str(cache / "code" / "*")]},
    ])


def large_page(cache: Path, words: int = 60_000) -> bytes:
    """A 20 MB HTML page of real parts: the first chapters of Moby-Dick as its paragraphs
    (under Gopher's 100,000-word maximum for web pages, and too little of the book to be its
    near-duplicate), the inline scripts and styles of a real web application as its bulk."""
    book = (cache / "books" / "mobydick.txt").read_text().replace("\r\n", "\n")
    start = book.index("CHAPTER 1. Loomings.")
    paragraphs, count = [], 0
    for block in book[start:].split("\n\n"):
        text = " ".join(block.split())
        if text:
            paragraphs.append(text)
            count += len(text.split())
        if count >= words:
            break
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
    static = cache / "code" / "pywb-2.10.0" / "pywb" / "static"
    script = (static / "wombat.js").read_text()
    style = (static / "css" / "bootstrap.min.css").read_text()
    page = ("<!DOCTYPE html><html><head><title>Moby-Dick, chapters 1 to 40</title>"
            f"<style>{style}</style></head><body><nav><a href='/'>Home</a> "
            f"<a href='/books'>Books</a></nav><article><h1>Moby-Dick</h1>{body}</article>")
    filler = f"<script>{script}</script>\n"
    page += filler * max(0, (LARGE_PAGE_BYTES - len(page)) // len(filler) + 1)
    return (page + "<footer>Project Gutenberg text</footer></body></html>").encode()


def write_warc(path: Path, url: str, payload: bytes) -> Path:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                               protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload),
                                                  http_headers=headers))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


@dataclass
class RealRun:
    """One curation of the real corpora and what it left."""

    cache: Path
    root: Path
    reports: list[StageReport]
    accounting: dict[str, Any]
    seconds: float
    large_page: Path
    shard_seconds: dict[str, float] = field(default_factory=dict)

    def inputs(self) -> dict[str, dict[str, Any]]:
        return dict(self.reports[0].extra.get("inputs", {}))

    def table(self, folder: str, columns: list[str]) -> list[dict[str, Any]]:
        path = self.root / folder
        files = [str(p) for p in sorted(path.glob("*.parquet")) if not p.name.startswith(".")]
        return ds.dataset(files, format="parquet").to_table(columns=columns).to_pylist() \
            if files else []


def curate_real(cache: Path, root: Path, cfg: CurateConfig | None = None) -> RealRun:
    """Curate the real corpora into ``root`` with the default configuration."""
    page = write_warc(root / "inputs" / "large-page.warc.gz", "https://example.org/docs",
                      large_page(cache))
    sources = real_sources(cache, [page])
    start = time.perf_counter()
    reports, accounting = curate_in_process(sources, cfg or CurateConfig(), root)
    seconds = time.perf_counter() - start
    shard_seconds: Counter[str] = Counter()
    for shard in plan_shards(sources):
        for stage in ("quality", "toxicity"):  # the two fused steps of each shard
            report = Layout(root).report(stage, shard.index)
            shard_seconds[shard.kind] += json.loads(report.read_text())["seconds"]
    return RealRun(cache, root, reports, accounting, seconds, page, dict(shard_seconds))


def debris(text: str) -> Counter[str]:
    """Wikitext left in ``text``, by kind (formula lines excepted)."""
    found: Counter[str] = Counter()
    for line in text.split("\n"):
        if _TEX.search(line):
            continue
        for name, pattern in DEBRIS.items():
            found[name] += len(re.findall(pattern, line))
    return +found


def baseline_debris(cache: Path) -> tuple[int, Counter[str]]:
    """What the usual recipe leaves (HF ``wikipedia`` builder: mwparserfromhell, refs and
    tables and file/category links removed, then ``strip_code``) on the same articles."""
    import bz2

    import mwparserfromhell

    found: Counter[str] = Counter()
    pages = 0
    path = next((cache / "wikipedia").glob("enwiki-latest-pages-articles1*"))
    xml = bz2.decompress(path.read_bytes()).decode()
    for raw in re.findall(r"<text[^>]*>(.*?)</text>", xml, re.DOTALL):
        wikitext = html.unescape(raw)
        if wikitext.lower().startswith("#redirect"):
            continue
        code = mwparserfromhell.parse(wikitext)
        for node in code.filter_tags(matches=lambda n: str(n.tag) in ("ref", "table")):
            with contextlib.suppress(ValueError):
                code.remove(node)
        for link in code.filter_wikilinks():
            if re.match(r"(File|Image|Category):", str(link.title), re.IGNORECASE):
                with contextlib.suppress(ValueError):
                    code.remove(link)
        found += debris(code.strip_code())
        pages += 1
    return pages, found


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    target: str
    passed: bool


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _code_checks(run: RealRun) -> list[Check]:
    inputs = run.inputs()
    cpython = next(v for k, v in inputs.items() if k.endswith("/code/cpython"))
    cpython_files = len(list((run.cache / "code" / "cpython").rglob("*.py")))
    curated = run.table("curated", ["source", "location", "meta"])
    cpython_kept = [json.loads(r["meta"]) for r in curated
                    if r["location"].startswith("cpython#")]
    own = [m for m in cpython_kept if not m["license_evidence"].startswith("LICENSE.txt")]
    python_licence = sum(m["license"] in ("PSF-2.0", "Python-2.0", "Python-2.0.1")
                         for m in cpython_kept if m not in own)
    rejected = run.table("rejected", ["reason", "location", "detail"])
    vendor = [r for r in rejected + curated  # each file of the tree is in one of the two
              if r["location"].startswith("pip-") and "/_vendor/" in r["location"]]
    vendored = sum(r.get("reason") == "ingest:code/vendored" for r in vendor)
    # an empty ``__init__.py`` has no text to keep: only a judgement on a file with content counts
    internal = [r for r in rejected if "/_internal/" in r["location"]
                and r["reason"].startswith("ingest:") and r["reason"] != "ingest:code/empty"]
    pywb = [json.loads(r["detail"]) for r in rejected
            if r["location"].startswith("pywb-") and r["reason"] == "ingest:code/license"]
    gpl = sum(d["license"] == "GPL-3.0" for d in pywb)
    return [
        Check("CPython files kept at ingest", f"{cpython['documents']}/{cpython_files}",
              ">= 95%", _share(cpython["documents"], cpython_files) >= 0.95),
        Check("CPython files labelled with the tree's Python licence",
              f"{python_licence}/{len(cpython_kept) - len(own)} (+{len(own)} with a "
              "notice of their own)", ">= 95%",
              _share(python_licence, len(cpython_kept) - len(own)) >= 0.95),
        Check("pip _vendor files dropped as vendored", f"{vendored}/{len(vendor)}", ">= 95%",
              _share(vendored, len(vendor)) >= 0.95),
        Check("pip _internal files with content dropped at ingest", str(len(internal)), "0",
              not internal),
        Check("pywb (GPLv3) recorded as GPL-3.0", f"{gpl}/{len(pywb)}", ">= 95%",
              _share(gpl, len(pywb)) >= 0.95),
    ]


def checks(run: RealRun) -> list[Check]:
    """What must hold on the real inputs (the closing note's table)."""
    by_stage = {r.stage: r for r in run.reports}
    curated = run.table("curated", ["source", "text", "location", "title"])
    wiki_debris = sum((debris(r["text"]) for r in curated if r["source"] == "wikipedia"),
                      Counter())
    inputs = run.inputs()
    bg = next(v for k, v in inputs.items() if "bgwiki" in k)
    books_files = len(list((run.cache / "books").glob("*.txt")))
    books_last = by_stage["toxicity"].sources.get("books")
    page = inputs[run.large_page.as_uri()]
    rejected = run.table("rejected", ["location", "reason"])
    page_end = [r for r in curated + rejected if r["location"].startswith("large-page.warc")
                and r.get("reason", "toxicity:").startswith("toxicity:")]
    missing = sorted(k for k in _expected_inputs(run) if k not in inputs)
    return [
        Check("every input file in the manifest", f"{len(missing)} missing", "0", not missing),
        Check("records read = curated + rejected, skipped = quarantined",
              "; ".join(run.accounting["problems"]) or "all sources add up", "all",
              run.accounting["ok"]),
        Check("wikitext debris in curated Wikipedia text",
              ", ".join(f"{k} {v}" for k, v in wiki_debris.items()) or "none", "none",
              not wiki_debris),
        Check("Bulgarian UTF-16 dump read", f"{bg['documents']} article(s)", ">= 1",
              bg["documents"] >= 1),
        *_code_checks(run),
        Check("books through every stage", f"{books_last.docs_in if books_last else 0}/"
              f"{books_files} reach the last stage", "all",
              bool(books_last) and books_last.docs_in == books_files),
        Check("20 MB web page through every stage",
              f"{page['documents']} read, {len(page_end)} at the last stage", "1 and 1",
              page["documents"] == 1 and len(page_end) == 1),
    ]


def _expected_inputs(run: RealRun) -> list[str]:
    files = [p for kind in ("wikipedia", "commoncrawl", "books") for p in
             (run.cache / kind).iterdir() if p.is_file()]
    return sorted({p.as_uri() for p in [*files, *(run.cache / "code").iterdir(),
                                        run.large_page]})


def _print_table(rows: list[list[Any]], header: list[str], out: Callable[[str], None]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in [header, ["-" * w for w in widths], *rows]:
        out("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def report(run: RealRun, out: Callable[[str], None] = print) -> None:
    files = Counter(v["source"] for v in run.inputs().values())
    out(f"real corpora in {run.cache}; curated into {run.root} in {run.seconds:.0f} s\n")
    rows = []
    for source in sorted(files):
        first, last = run.reports[0].sources[source], run.reports[-1].sources.get(source)
        reasons = Counter()
        for r in run.reports:
            if source in r.sources:
                reasons.update({f"{r.stage}:{k}": v for k, v in r.sources[source].dropped
                                .items()})
        top = ", ".join(f"{k} {v}" for k, v in reasons.most_common(4))
        rows.append([source, files[source], first.docs_in, last.docs_out if last else 0,
                     f"{run.shard_seconds.get(source, 0):.0f}", top])
    _print_table(rows, ["source", "files", "docs in", "docs out", "seconds",
                        "top removals"], out)
    pages, base = baseline_debris(run.cache)
    ours = sum((debris(r["text"]) for r in run.table("curated", ["source", "text"])
                if r["source"] == "wikipedia"), Counter())
    out(f"\nwikitext debris on {pages} enwiki articles: lmforge {sum(ours.values())}, "
        f"mwparserfromhell strip_code baseline {sum(base.values())} "
        f"({', '.join(f'{k} {v}' for k, v in base.most_common())})\n")
    _print_table([[c.name, c.value, c.target, "ok" if c.passed else "FAILED"]
                  for c in checks(run)], ["check", "measured", "target", ""], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="real corpora folder")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: temp)")
    args = parser.parse_args()
    prepare_environment()
    cache = fetch(args.cache or default_cache())
    with tempfile.TemporaryDirectory(prefix="lmforge-real-") as tmp:
        report(curate_real(cache, args.out or Path(tmp)))


if __name__ == "__main__":
    main()
