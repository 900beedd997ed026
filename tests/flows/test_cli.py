"""The `lmforge` command as a user runs it (subprocesses, real services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from lmforge.flows.launch import PERSISTENT_PREFECT_UI
from lmforge.infra.settings import SAMPLE_DIR

LMFORGE = str(Path(sys.executable).parent / "lmforge")


def lmforge(*args: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LMFORGE_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([LMFORGE, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def small_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((SAMPLE_DIR / "pipeline.yaml").read_text())
    for source in cfg["sources"]:
        source["paths"] = [str(SAMPLE_DIR / p) for p in source["paths"]]
    for task in cfg["evaluate"]["tasks"]:
        task.update({k: str(SAMPLE_DIR / task[k]) for k in ("path", "fewshot_path") if k in task})
    security = cfg["evaluate"]["security"]
    security.update({k: str(SAMPLE_DIR / v) for k, v in security.items() if isinstance(v, str)})
    for section in ("finetune", "align"):
        data = cfg[section]["data"]
        data["paths"] = [str(SAMPLE_DIR / p) for p in data["paths"]]
    safety = cfg["align"]["safety"]
    safety.update({k: str(SAMPLE_DIR / v) for k, v in safety.items() if isinstance(v, str)},
                  refusals=[str(SAMPLE_DIR / p) for p in safety["refusals"]])
    cfg["finetune"]["train"].update(steps=4, eval_every=2, checkpoint_every=2)
    cfg["train"].update(steps=10, eval_every=5)
    cfg["tracking"] = {"experiment": "cli"}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.e2e
def test_stage_commands_one_after_another_without_services(tmp_path) -> None:
    """No services up: each command starts a temporary Prefect server and writes MLflow into
    the embedded SQLite store of $LMFORGE_HOME."""
    cfg, out, home = small_config(tmp_path), tmp_path / "out", tmp_path / "home"
    for stage in ("curate", "tokenize", "train", "evaluate"):
        done = lmforge(stage, "-c", str(cfg), "-o", str(out), home=home)
        assert done.returncode == 0, f"{stage}: {done.stdout}\n{done.stderr}"
        # the temporary server shares the persistent one's database: links name the latter
        assert f"Prefect flow run:  {PERSISTENT_PREFECT_UI}/runs/flow-run/" in done.stdout
        if stage == "curate":  # the summary says what each stage removed
            assert "rejected by stage: " in done.stdout and "quality " in done.stdout
            # library chatter stays out of the terminal (Dask shuffles, Prefect task runs)
            assert "Shuffle" not in done.stderr and "Task run" not in done.stderr
            assert len(done.stderr.splitlines()) < 30, done.stderr
    assert json.loads((out / "manifest.json").read_text())["outputs"]["curated"]["documents"]
    assert (out / "tokens" / "manifest.json").exists() and (out / "model" / "model.pt").exists()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["perplexity"] > 1
    assert (home / "mlflow" / "mlflow.db").exists() and (home / "prefect").is_dir()
    assert "perplexity" in done.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    links = [r.data.tags.get("prefect.flow_run_url", "") for r in runs]
    assert links and all(link.startswith(PERSISTENT_PREFECT_UI) for link in links if link)


def test_bad_config_exits_2_before_any_work(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - kind: tweets\n    paths: [x]\n")
    done = lmforge("curate", "-c", str(bad), "-o", str(tmp_path / "out"), home=tmp_path)
    assert done.returncode == 2
    assert "sources.0" in done.stderr and "commoncrawl" in done.stderr
    assert not (tmp_path / "out").exists()


def test_compress_refuses_an_unknown_method_before_any_work(tmp_path) -> None:
    done = lmforge("compress", "-m", "int3", "-o", str(tmp_path / "out"), home=tmp_path)
    assert done.returncode == 2
    assert "--method 'int3'" in done.stdout and "int4-weight" in done.stdout
    assert not (tmp_path / "out" / "compress").exists()


def test_config_command_prints_resolved_defaults(tmp_path) -> None:
    done = lmforge("config", home=tmp_path)
    assert done.returncode == 0
    assert "min_words: 50" in done.stdout and "kind: wikipedia" in done.stdout


def test_services_status_reports_running_servers(services_up, lmforge_home) -> None:
    done = lmforge("services", "status", home=lmforge_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "prefect: up" in done.stdout and "mlflow: up" in done.stdout
    assert "worker: up" in done.stdout and "work pool 'lmforge'" in done.stdout


def test_services_status_when_nothing_runs(tmp_path) -> None:
    done = lmforge("services", "status", home=tmp_path)
    assert done.returncode == 1 and "lmforge services up" in done.stdout


@pytest.mark.parametrize("problem", ["missing", "empty", "unwritable"])
def test_bad_paths_fail_in_one_line_before_the_flow_starts(tmp_path, problem) -> None:
    """A missing input folder, an empty one, an output that cannot be written: one line that
    says what to do, exit 2, and nothing started (no Prefect run, no output folder)."""
    import time

    cfg = yaml.safe_load(small_config(tmp_path).read_text())
    out = tmp_path / "out"
    if problem == "missing":
        cfg["sources"][0]["paths"] = [str(tmp_path / "nowhere" / "*.xml")]
        needle = f"{tmp_path / 'nowhere'} does not exist"
    elif problem == "empty":
        (tmp_path / "empty").mkdir()
        cfg["sources"][0]["paths"] = [str(tmp_path / "empty" / "*.warc.gz")]
        needle = f"the folder {tmp_path / 'empty'} is empty"
    elif os.geteuid() == 0:
        (tmp_path / "file").write_text("x")  # root writes anywhere: a file in the way
        out = tmp_path / "file" / "out"
        needle = "cannot be created"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "out"
        needle = "permission denied"
    path = tmp_path / "paths.yaml"
    path.write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    done = lmforge("curate", "-c", str(path), "-o", str(out), home=tmp_path / "home")
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and needle in errors[0], errors
    assert "Traceback" not in done.stderr and "Prefect" not in done.stdout + done.stderr
    assert not out.exists() and not (tmp_path / "home" / "prefect").exists()
    print(f"{problem}: refused in {seconds:.2f} s")  # before: after the cluster and flow


def test_version_and_fast_help(tmp_path) -> None:
    done = lmforge("--version", home=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("lmforge ")
    # --help imports no command's dependencies (Prefect, MLflow, torch, presidio)
    probe = subprocess.run([sys.executable, "-c", "import sys, lmforge.flows.cli; print(sorted("
                            "m for m in ('prefect', 'mlflow', 'torch', 'presidio_analyzer', "
                            "'dask') if m in sys.modules))"], capture_output=True, text=True,
                           check=True)
    assert probe.stdout.strip() == "[]"


@pytest.mark.e2e
def test_ctrl_c_stops_in_one_line_and_the_rerun_says_what_it_reused(tmp_path) -> None:
    import signal
    import time

    cfg, out, home = small_config(tmp_path), tmp_path / "out", tmp_path / "home"
    env = {**os.environ, "LMFORGE_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([LMFORGE, "curate", "-c", str(cfg), "-o", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reports = out / "_work" / "reports" / "quality"
    deadline = time.monotonic() + 300
    while not list(reports.glob("part-*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(reports.glob("part-*.json")), "no shard finished"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr
    assert f"rerun `lmforge curate -c {cfg} -o {out}` to resume" in " ".join(stderr.split())
    assert "Traceback" not in stderr, stderr
    done = lmforge("curate", "-c", str(cfg), "-o", str(out), home=home)
    assert done.returncode == 0, done.stderr
    assert "resumed: " in done.stdout and "shards reused from an earlier run" in done.stdout


def test_ctrl_c_inside_a_library_that_wraps_it_still_ends_as_an_interruption(monkeypatch,
                                                                           capsys) -> None:
    """CI once caught the SIGINT inside a pydantic serializer in Prefect's context hand-off:
    it surfaced as ``PydanticSerializationError`` and a Failed flow, exit 1 with a traceback.
    Our handler records the interrupt first, so whatever the library raises it ends as one."""
    import signal

    import typer
    from lmforge.flows import cli_run

    def wrapping_library(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as err:  # what pydantic-core does with it
            raise ValueError("Error calling function `_ser_model`: KeyboardInterrupt") from err
        raise AssertionError("SIGINT was not delivered")

    monkeypatch.setattr(cli_run, "_until_done", wrapping_library)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(typer.Exit) as stopped:
        cli_run.run_flow(lambda cfg: None, None)  # type: ignore[arg-type]
    assert stopped.value.exit_code == 130
    printed = capsys.readouterr()
    assert "Interrupted." in printed.out + printed.err and "Traceback" not in printed.err
    assert signal.getsignal(signal.SIGINT) is before  # the handler is scoped to the run
