"""A web crawl of a chosen size made of real parts, in CommonCrawl's format (cached on disk).

Every page is a real page of the Python documentation (``infra/real_corpora.py``: Debian's
``python3.11-doc`` as crawled WARC records) whose main text is replaced by 6-30 real paragraphs
drawn at random from a pool of everything nobody here wrote: the documentation's own ``<p>``
elements (with their inline markup) and the paragraphs of the Austen novels and Moby-Dick. The
navigation, sidebars, scripts and footers stay those of the real page, so extraction does the
work it does on a crawl. A share of pages is planted as duplicates, as a crawl has them: exact
copies under another URL and near copies with 1-10% of their words replaced.

    python -m benchmarks.webcorpus --mb 200 --out DIR     # builds DIR/*.warc.gz, DIR/truth.json
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

from lmforge.infra.make_sample import _warc_response
from lmforge.infra.real_corpora import default_cache, fetch
from warcio.archiveiterator import ArchiveIterator
from warcio.warcwriter import WARCWriter

from benchmarks.corpus import MB

EXACT, NEAR = 0.05, 0.20  # shares of pages planted as exact and as near copies
EDIT_RATES = (0.01, 0.03, 0.05, 0.10)
FORMAT = 1  # bump when the pages change
_BODY_START = '<div class="body" role="main">'
_BODY_END = '<div class="clearer"></div>'
_P = re.compile(r"<p>(.*?)</p>", re.S)
_TAG = re.compile(r"<[^>]+>")
_WORD = re.compile(r"[A-Za-z]{3,}")
_FILLERS = ("stone", "river", "lantern", "harbour", "meadow", "copper", "window", "garden")


def real_parts(cache: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """The templates: (head up to the main text, the rest) of every documentation page that
    has one; and the pool: the documentation's paragraphs (as HTML) and the novels' (escaped)."""
    templates, pool = [], []
    with (cache / "python-docs" / "python-docs.warc.gz").open("rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type != "response":
                continue
            page = record.content_stream().read().decode("utf-8", "replace")
            start, end = page.find(_BODY_START), page.find(_BODY_END)
            if 0 < start < end:
                templates.append((page[:start + len(_BODY_START)], page[end:]))
            pool += [p.strip() for p in _P.findall(page) if len(_TAG.sub("", p).split()) >= 12]
    for book in sorted((cache / "books").glob("*.txt")):
        text = book.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        for block in re.split(r"\n\s*\n", text):
            words = block.split()
            if len(words) >= 25:
                pool.append(html.escape(" ".join(words), quote=False))
    return templates, pool


def edit(paras: list[str], rate: float, rng: random.Random) -> list[str]:
    """Replace about ``rate`` of the words outside tags."""
    def one(text: str) -> str:
        parts = re.split(r"(<[^>]+>)", text)
        for i, part in enumerate(parts):
            if not part.startswith("<"):
                parts[i] = _WORD.sub(lambda m: rng.choice(_FILLERS) if rng.random() < rate
                                     else m.group(0), part)
        return "".join(parts)
    return [one(p) for p in paras]


def page(template: tuple[str, str], paras: list[str]) -> bytes:
    title = " ".join(_TAG.sub("", paras[0]).split()[:6])
    body = "".join(f"<p>{p}</p>\n" for p in paras)
    return (f"{template[0]}\n<section><h1>{html.escape(title)}</h1>\n{body}</section>\n"
            f"{template[1]}").encode()


def build(out: Path, total_mb: float, files: int = 16, seed: int = 0,
          cache: Path | None = None) -> Path:
    """``files`` WARCs of about ``total_mb`` MB on disk in all (cached by size and seed);
    ``truth.json`` lists the planted copies (kind, original URL, copy URL, edit rate)."""
    marker = out / f".built-{FORMAT}-{total_mb}-{files}-{seed}"
    if marker.exists():
        return out
    cache = cache or default_cache()
    fetch(cache)
    tpls, pool = real_parts(cache)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.warc.gz"):
        old.unlink()
    bodies: list[tuple[str, list[str]]] = []
    truth, n = [], 0
    epoch = datetime(2024, 6, 1)
    per_file = total_mb * MB / files
    for f in range(files):
        path = out / f"CC-MAIN-bench-{f:05d}.warc.gz"
        with path.open("wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            while fh.tell() < per_file:
                url = f"https://site{rng.randrange(400)}.example.org/{rng.randrange(10**6)}/{n}"
                roll = rng.random()
                if bodies and roll < EXACT:
                    original, paras = rng.choice(bodies)
                    truth.append({"kind": "exact", "original": original, "copy": url,
                                  "rate": 0.0})
                elif bodies and roll < EXACT + NEAR:
                    original, base = rng.choice(bodies)
                    rate = rng.choice(EDIT_RATES)
                    paras = edit(base, rate, rng)
                    truth.append({"kind": "near", "original": original, "copy": url,
                                  "rate": rate})
                else:
                    paras = rng.sample(pool, rng.randint(6, 30))
                    bodies.append((url, paras))
                _warc_response(writer, url, page(rng.choice(tpls), paras),
                               "text/html; charset=utf-8", epoch + timedelta(seconds=n))
                n += 1
    (out / "truth.json").write_text(json.dumps({"pages": n, "planted": truth}))
    marker.write_text("ok")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folder = build(args.out, args.mb, args.files)
    info = json.loads((folder / "truth.json").read_text())
    size = sum(p.stat().st_size for p in folder.glob("*.warc.gz"))
    print(f"{info['pages']} pages, {len(info['planted'])} planted copies, "
          f"{size / MB:.1f} MB in {args.files} WARCs under {folder}")


if __name__ == "__main__":
    main()
