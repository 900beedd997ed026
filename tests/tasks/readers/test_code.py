from __future__ import annotations

from tasks.readers.code import detect_license
from tests.tasks.readers.helpers import read


def test_reads_source_files_with_language_and_licence(sample_dir) -> None:
    result = read("code", sample_dir / "code/*")
    paths = {d.meta["path"]: d for d in result.docs}
    assert "westmark/records.py" in paths and "web/app.js" in paths
    records = paths["westmark/records.py"]
    assert records.meta["language"] == "python" and records.meta["license"] == "MIT"
    assert records.meta["repo"] == "westmark-tools"


def test_skips_vendored_minified_generated_binary_and_copyleft(sample_dir) -> None:
    result = read("code", sample_dir / "code/*")
    reasons = sorted(r for _, r in result.skipped)
    assert reasons == ["code/binary", "code/generated", "code/license", "code/minified",
                       "code/vendored"]
    assert not any("node_modules" in d.location for d in result.docs)


def test_any_licence_when_configured(sample_dir) -> None:
    result = read("code", sample_dir / "code/*", licenses=None)
    assert any(d.meta["license"] == "GPL-3.0-or-later" for d in result.docs)


def test_license_detection() -> None:
    assert detect_license("# SPDX-License-Identifier: Apache-2.0\nx = 1") == "Apache-2.0"
    assert detect_license("Permission is hereby granted, free of charge, to any person") == "MIT"
    assert detect_license("just some text") is None


def test_invalid_utf8_file_is_quarantined(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "LICENSE").write_text("MIT License\nPermission is hereby granted, free of charge")
    (repo / "bad.py").write_bytes(b"x = '\xff\xfe'\n")
    (repo / "good.py").write_text("x = 1\n")
    result = read("code", tmp_path / "*")
    assert [d.meta["path"] for d in result.docs] == ["good.py"]
    assert result.quarantined[0]["reason"] == "code/invalid_utf8"
