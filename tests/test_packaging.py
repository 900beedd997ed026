"""The distribution installs one namespace, `lmforge`, over the card's top-level folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_only_the_lmforge_namespace(tmp_path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(ROOT), "-w", str(tmp_path)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("lmforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"lmforge"}, top
    for path in ("lmforge/__init__.py", "lmforge/flows/cli.py",
                 "lmforge/tasks/readers/commoncrawl.py", "lmforge/model/parallel/__init__.py",
                 "lmforge/infra/sample/pipeline.yaml"):
        assert path in names, path
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"lmforge = lmforge.flows.cli:app" in entry


def test_import_lmforge_names_the_version() -> None:
    import lmforge.flows.cli

    assert lmforge.__version__[0].isdigit()
    assert Path(lmforge.flows.cli.__file__).parent == ROOT / "flows"
