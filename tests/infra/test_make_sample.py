from __future__ import annotations

import hashlib

from lmforge.infra.make_sample import build


def _digests(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "pipeline.yaml"}


def test_script_rebuilds_the_shipped_sample_byte_for_byte(sample_dir, tmp_path) -> None:
    build(tmp_path)
    assert _digests(tmp_path) == _digests(sample_dir)
