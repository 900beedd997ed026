from __future__ import annotations

from pathlib import Path

import pytest
from lmforge.flows.config import ConfigError, RunConfig, load_config

GOOD = """
output: out
sources:
  - kind: reddit
    paths: ["data/RC_*.zst"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_default_sample_config_validates() -> None:
    cfg = load_config()
    assert [s.kind for s in cfg.sources] == ["wikipedia", "commoncrawl", "reddit", "commoncrawl",
                                             "books", "code"]
    assert Path(cfg.sources[0].paths[0]).is_absolute()


def test_relative_paths_resolve_against_the_config_folder(tmp_path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.sources[0].paths == [str(tmp_path / "data/RC_*.zst")]
    assert cfg.output == Path("out")


def test_unknown_top_level_key_lists_allowed_keys(tmp_path) -> None:
    message = error_of(tmp_path, GOOD + "trian: {steps: 3}\n")
    assert "trian: unknown key" in message
    assert "allowed keys here:" in message and "train" in message and "sources" in message


def test_bad_kind_names_the_allowed_kinds(tmp_path) -> None:
    message = error_of(tmp_path, "sources:\n  - kind: twitter\n    paths: [x]\n")
    assert "sources.0" in message and "twitter" in message
    for kind in ("books", "commoncrawl", "reddit", "wikipedia", "code"):
        assert kind in message


def test_unknown_source_option_lists_that_kinds_fields(tmp_path) -> None:
    message = error_of(tmp_path, GOOD + "    min_karma: 3\n")
    assert "sources.0.reddit.min_karma: unknown key" in message
    assert "min_score" in message and "bots" in message


def test_nested_bad_value_and_several_problems_at_once(tmp_path) -> None:
    message = error_of(tmp_path, GOOD + "train: {steps: -1, lr: abc}\n"
                       "curate: {quality: {books: {gopher: {min_wrods: 3}}}}\n")
    assert "train.steps" in message and "got -1" in message
    assert "train.lr" in message and "'abc'" in message
    assert "curate.quality.books.gopher.min_wrods: unknown key" in message
    assert "min_words" in message


def test_cross_field_problem_names_both_keys(tmp_path) -> None:
    message = error_of(tmp_path, GOOD + "dataset: {seq_len: 512}\nmodel: {block_size: 128}\n")
    assert "dataset.seq_len=512" in message and "model.block_size=128" in message


def test_empty_sources_and_bad_yaml(tmp_path) -> None:
    assert "sources" in error_of(tmp_path, "output: x\n")
    assert "not valid YAML" in error_of(tmp_path, "sources: [\n")
    assert "mapping" in error_of(tmp_path, "- just a list\n")


def test_digest_changes_with_config() -> None:
    a = load_config()
    b = RunConfig.model_validate({**a.model_dump(), "train": {"steps": 7}})
    assert a.digest() != b.digest() and a.digest() == load_config().digest()


def test_concurrent_saves_of_one_config_never_collide(tmp_path: Path) -> None:
    """The nodes of a multi-node launch save into one shared folder at the same moment (a shared
    temporary name made one writer's rename fail and hung the other node)."""
    from concurrent.futures import ThreadPoolExecutor

    from lmforge.flows.config import save_config

    cfg = load_config()
    target = tmp_path / "shared" / "config.yaml"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: save_config(cfg, target), range(200)))
    assert load_config(target) == cfg
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]


def test_finetune_paths_are_checked_by_the_commands_that_fine_tune(tmp_path) -> None:
    from lmforge.flows.config import preflight

    cfg = load_config(output=tmp_path / "out")
    assert cfg.finetune is not None and preflight(cfg, finetune=True) == []
    moved = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={
        "data": cfg.finetune.data.model_copy(update={"paths": (str(tmp_path / "none/*"),)}),
        "base": tmp_path / "missing.pt"})})
    problems = preflight(moved, finetune=True)
    assert [p.split(":")[0] for p in problems] == ["finetune.data.paths", "finetune.base"]
    assert preflight(moved) == []  # curate and train do not read them
