"""Code from archives and git repositories, read without extraction and safely."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from lmforge.infra.make_sample import CODE_FILES, MIT
from lmforge.tasks.readers.containers import safe_path

from tests.tasks.readers.helpers import read

GOOD = {k: v for k, v in CODE_FILES.items() if k.startswith("westmark/") and "generated" not in k}


def _tar(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)


def _files(prefix: str = "") -> dict[str, bytes]:
    out = {f"{prefix}{k}": v.encode() for k, v in GOOD.items()}
    out[f"{prefix}LICENSE"] = MIT.encode()
    return out


def test_safe_path() -> None:
    assert safe_path("a/./b.py") == "a/b.py"
    for bad in ("/etc/passwd", "../x.py", "a/../../x.py", "C:\\x.py", ""):
        assert safe_path(bad) is None


def test_tar_gz_archive_with_top_folder(tmp_path) -> None:
    _tar(tmp_path / "proj-1.0.tar.gz", _files("proj-1.0/"))
    result = read("code", tmp_path / "proj-1.0.tar.gz")
    paths = sorted(d.meta["path"] for d in result.docs)
    assert paths == sorted(f"proj-1.0/{k}" for k in GOOD)
    assert {d.meta["license"] for d in result.docs} == {"MIT"}


def test_zip_archive(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "proj.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in _files().items():
            z.writestr(name, data)
    result = read("code", tmp_path / "proj.zip")
    assert len(result.docs) == len(GOOD)


def test_path_traversal_and_symlinks_are_quarantined_never_written(tmp_path) -> None:
    link = tarfile.TarInfo("evil/link.py")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    files = {**_files(), "../../escape.py": b"print('owned')\n",
             "/abs/root.py": b"print('owned')\n"}
    _tar(tmp_path / "evil.tar.gz", files, [link])
    before = set(tmp_path.parent.rglob("*"))
    result = read("code", tmp_path / "evil.tar.gz")
    reasons = sorted(q["reason"] for q in result.quarantined)
    assert reasons == ["code/symlink", "code/unsafe_path", "code/unsafe_path"]
    assert len(result.docs) == len(GOOD)
    assert set(tmp_path.parent.rglob("*")) == before  # nothing extracted anywhere
    assert not any("escape" in d.location or "passwd" in d.text for d in result.docs)


def test_symlink_in_a_tree_is_not_followed(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "LICENSE").write_text(MIT)
    (repo / "ok.py").write_text("x = 1\n")
    secret = tmp_path / "secret.py"
    secret.write_text("PASSWORD = 'hunter2'\n")
    os.symlink(secret, repo / "leak.py")
    result = read("code", tmp_path / "repo")
    assert [d.meta["path"] for d in result.docs] == ["ok.py"]
    assert [q["reason"] for q in result.quarantined] == ["code/symlink"]


def test_zip_bomb_member_is_refused(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("LICENSE", MIT)
        z.writestr("big.py", b"0" * (20 << 20))  # 20 MiB of zeros: ratio ~1000:1
        z.writestr("ok.py", b"x = 1\n")
    result = read("code", tmp_path / "bomb.zip")
    assert [d.meta["path"] for d in result.docs] == ["ok.py"]
    assert [q["reason"] for q in result.quarantined] == ["code/compression_bomb"]


def test_archive_total_limit(tmp_path) -> None:
    files = {"LICENSE": MIT.encode(), **{f"m{i}.py": b"x = 1\n" * 200 for i in range(20)}}
    _tar(tmp_path / "many.tar.gz", files)
    result = read("code", tmp_path / "many.tar.gz", max_archive_bytes=5000)
    assert 0 < len(result.docs) < 20
    assert [q["reason"] for q in result.quarantined] == ["code/archive_limit"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("bare", [False, True])
def test_git_repository_reads_committed_files(tmp_path, bare: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for name, data in _files().items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    (work / "uncommitted.py").write_text("y = 2\n")
    git = ["git", "-C", str(work), "-c", "user.email=t@e.st", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", *[n for n in _files()]], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    target = work
    if bare:
        target = tmp_path / "repo.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(target)], check=True)
    result = read("code", target)
    assert sorted(d.meta["path"] for d in result.docs) == sorted(GOOD)
    assert {d.meta["license"] for d in result.docs} == {"MIT"}


def test_big_tree_is_split_into_strided_pieces(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "LICENSE").write_text(MIT)
    for i in range(30):
        (repo / f"m{i:02d}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    whole = read("code", tmp_path / "repo")
    split = read("code", tmp_path / "repo", split_bytes=4096)
    assert split.partitions > 3
    assert sorted(d.id for d in split.docs) == sorted(d.id for d in whole.docs)
    assert len(whole.docs) == 30
