"""Generated corpora of a chosen size in the real formats, for the benchmarks (cached on disk).

Built from the sample generator's prose, so every benchmark measures real parsing, extraction
and filtering work on text that looks like each source.
"""

from __future__ import annotations

import bz2
import io
import json
import random
from datetime import timedelta
from pathlib import Path

from lmforge.infra.make_sample import (
    CHAT,
    CODE_FILES,
    EPOCH,
    FACTS,
    MIT,
    PLACES,
    WIKI_HEADER,
    Prose,
    _comment,
    _warc_response,
    _zstd_long,
    book,
    html_page,
    wiki_article,
    wiki_page,
)
from warcio.warcwriter import WARCWriter

MB = 1024 * 1024
SHARES = {"commoncrawl": 0.15, "wikipedia": 0.25, "reddit": 0.30, "books": 0.20, "code": 0.10}


def warc(path: Path, target: int, seed: int) -> int:
    prose, buf, n = Prose(seed), io.BytesIO(), 0
    writer = WARCWriter(buf, gzip=True)
    raw = 0
    while raw < target:
        place = PLACES[n % len(PLACES)]
        page = html_page(f"{place} {n}", [prose.paragraph(FACTS, 5, place) for _ in range(6)])
        _warc_response(writer, f"https://bench.example.com/{n}", page, "text/html",
                       EPOCH + timedelta(seconds=n))
        raw += len(page)
        n += 1
    path.write_bytes(buf.getvalue())
    return n


def wikipedia(path: Path, target: int, seed: int) -> int:
    """A multistream dump: 100 pages per bz2 stream, as Wikipedia publishes them."""
    prose, n, raw = Prose(seed), 0, 0
    with path.open("wb") as out:
        out.write(bz2.compress(WIKI_HEADER.encode()))
        while raw < target:
            pages = []
            for _ in range(100):
                text = wiki_article(prose, PLACES[n % len(PLACES)])
                pages.append(wiki_page(1000 + n, f"Town {n}", text))
                n += 1
            data = "".join(pages).encode()
            raw += len(data)
            out.write(bz2.compress(data))
        out.write(bz2.compress(b"</mediawiki>\n"))
    return n


def reddit(path: Path, target: int, seed: int) -> int:
    prose, rng, lines, raw = Prose(seed), random.Random(seed), [], 0
    while raw < target:
        line = json.dumps(_comment(len(lines), prose.paragraph(CHAT, rng.randint(2, 6)),
                                   author=f"u{rng.randint(1, 999)}",
                                   score=rng.randint(1, 50))).encode() + b"\n"
        lines.append(line)
        raw += len(line)
    path.write_bytes(_zstd_long(lines))
    return len(lines)


def books(folder: Path, target: int, seed: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    prose, n, raw = Prose(seed), 0, 0
    while raw < target:
        text = book(prose, f"Bench Book {n}", "Anon", 80000 + n, 30,
                    "*** START OF THE PROJECT GUTENBERG EBOOK {title} ***",
                    "*** END OF THE PROJECT GUTENBERG EBOOK {title} ***")
        (folder / f"pg{80000 + n}.txt").write_text(text)
        raw += len(text)
        n += 1
    return n


def code(folder: Path, target: int, seed: int) -> int:
    rng = random.Random(seed)
    tree = folder / "bench-repo"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "LICENSE").write_text(MIT)
    sources = [v for k, v in CODE_FILES.items() if k.endswith(".py") and "generated" not in k
               and "populations" not in k]
    n, raw = 0, 0
    while raw < target:
        body = "\n\n".join(rng.choice(sources) for _ in range(4)).replace(
            "def ", f"def v{n}_")
        path = tree / f"pkg{n // 200}" / f"module_{n}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(body)
        raw += len(body)
        n += 1
    return n


def build(root: Path, total_mb: float, seed: int = 0, files: dict[str, int] | None = None
          ) -> dict[str, Path]:
    """A corpus of about ``total_mb`` MB of raw text across the five kinds (cached)."""
    files = files or {"commoncrawl": 4, "wikipedia": 1, "reddit": 1}
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".built-{total_mb}-{seed}"
    paths = {k: root / k for k in SHARES}
    if marker.exists():
        return paths
    for kind, share in SHARES.items():
        target = int(total_mb * MB * share)
        (root / kind).mkdir(exist_ok=True)
        count = files.get(kind, 1)
        for i in range(count):
            part = target // count
            if kind == "commoncrawl":
                warc(root / kind / f"CC-{i:03d}.warc.gz", part, seed + i)
            elif kind == "wikipedia":
                wikipedia(root / kind / f"enwiki-{i}-pages-articles-multistream.xml.bz2",
                          part, seed + i)
            elif kind == "reddit":
                reddit(root / kind / f"RC_bench-{i}.zst", part, seed + i)
            elif kind == "books":
                books(root / kind, part, seed + i)
            else:
                code(root / kind, part, seed + i)
    marker.write_text("ok")
    return paths


def raw_bytes(paths: dict[str, Path]) -> dict[str, int]:
    return {k: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            for k, p in paths.items()}



MENU = ["Home", "News", "Sport", "Weather", "Contact us", "About", "Shop", "Log in", "Search"]


def web_documents(n: int, seed: int = 0) -> list[str]:
    """About ``n`` web pages of about 2 KB: 60% readable articles, 40% junk of the kinds the
    published rule sets target (menus, repeats, keyword spam, code, placeholders, lists,
    cookie banners, fragments). Deterministic."""
    prose, rng = Prose(seed), random.Random(seed)
    docs = []
    for i in range(n):
        place = PLACES[i % len(PLACES)]
        kind = rng.random()
        article = "\n".join(prose.article(place, 5))
        if kind < 0.6:
            text = article
            if rng.random() < 0.3:  # boilerplate lines around a good article
                text = "\n".join(rng.sample(MENU, 4)) + "\n" + text + \
                    "\nWe use cookies to improve your experience on this site."
        elif kind < 0.66:
            text = "\n".join(rng.choice(MENU) for _ in range(40))
        elif kind < 0.72:
            para = prose.paragraph(FACTS, 3, place)
            text = "\n\n".join([para] * rng.randint(3, 6))
        elif kind < 0.78:
            spam = ["cheap", "deals", "best", "price", "buy", "now", "online", "free"]
            text = " ".join(rng.choice(spam) for _ in range(300))
        elif kind < 0.82:
            text = article + "\nfunction track() { window.analytics.push(arguments); }"
        elif kind < 0.85:
            text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " + article
        elif kind < 0.90:
            text = "\n".join(f"- {prose.fill(rng.choice(CHAT), place)}" for _ in range(20))
        elif kind < 0.95:
            text = " ".join(prose.paragraph(FACTS, 2, place).split()[: rng.randint(10, 60)])
        else:
            text = "### ... " * 40 + article[:400]
        docs.append(text)
    return docs
