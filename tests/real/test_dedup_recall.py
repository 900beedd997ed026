"""Near-duplicate recall per Jaccard bin on edited copies of real documents
(``benchmarks/dedup_recall.py`` prints the full table)."""

from __future__ import annotations

import shutil

import pytest
from lmforge.infra.real_corpora import default_cache, fetch
from lmforge.tasks.dedup import MinHashConfig

from benchmarks.dedup_recall import evaluate, make_pairs

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def pairs():
    if shutil.which("apt-get") is None and not (default_cache() / "sources.json").exists():
        pytest.skip("the real corpora come from Debian's archive: apt-get is not available")
    return make_pairs(fetch(default_cache()), 600)


def test_default_banding_finds_pairs_just_above_the_threshold(pairs, tmp_path) -> None:
    cfg = MinHashConfig()
    assert cfg.bands_rows() == (18, 7)
    result = evaluate(pairs, cfg, tmp_path / "default")
    assert sum(b.pairs for b in result.bins if b.low == 0.80) > 50
    assert result.recall_between(0.80, 0.85) >= 0.95
    assert result.recall_between(0.85, 1.0) >= 0.99
    assert result.precision >= 0.99
    # below the threshold nothing is removed: verification drops the extra candidates
    assert all(b.found == 0 for b in result.bins if b.high <= 0.80)


def test_balanced_banding_misses_half_of_them(pairs, tmp_path) -> None:
    """datasketch's balanced 9 x 13, the earlier default: about half of the pairs at
    0.80-0.85 are never candidates."""
    result = evaluate(pairs, MinHashConfig(min_recall=None), tmp_path / "balanced")
    assert (result.bands, result.rows) == (9, 13)
    assert result.recall_between(0.80, 0.85) < 0.75
