"""Cluster specs chosen by config: an address, a Kubernetes DaskCluster manifest, a SLURM job
script (generated for real by dask-jobqueue, not submitted)."""

from __future__ import annotations

import pytest
from lmforge.infra.cluster import DaskConfig, dask_cluster, kube_cluster_spec, slurm_cluster
from pydantic import ValidationError


def test_an_address_selects_the_external_scheduler() -> None:
    assert DaskConfig(address="tcp://10.0.0.5:8786").kind == "address"
    with pytest.raises(ValidationError, match=r"dask\.address"):
        DaskConfig(kind="address")
    with pytest.raises(ValidationError, match="slurm"):
        DaskConfig(kind="yarn")  # type: ignore[arg-type]


def test_kubernetes_manifest_for_the_dask_operator() -> None:
    cfg = DaskConfig.model_validate({"kind": "kubernetes", "n_workers": 5, "kubernetes": {
        "name": "curation", "namespace": "ml", "image": "registry/lmforge:1", "cpu": "4",
        "memory": "16Gi", "env": {"PREFECT_API_URL": "http://prefect:4200/api"}}})
    spec = kube_cluster_spec(cfg)
    assert spec["apiVersion"] == "kubernetes.dask.org/v1" and spec["kind"] == "DaskCluster"
    assert spec["metadata"] == {"name": "curation", "namespace": "ml"}
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 5
    [container] = worker["spec"]["containers"]
    assert container["image"] == "registry/lmforge:1"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}
    assert {"name": "PREFECT_API_URL", "value": "http://prefect:4200/api"} in container["env"]
    service = spec["spec"]["scheduler"]["service"]
    assert {p["port"] for p in service["ports"]} == {8786, 8787}


def test_kubernetes_without_the_operator_client_says_what_to_do() -> None:
    pytest.importorskip("distributed")
    try:
        import dask_kubernetes  # noqa: F401
        pytest.skip("dask-kubernetes is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="cluster-spec"), \
            dask_cluster(DaskConfig(kind="kubernetes")):
        pass


def test_slurm_job_script() -> None:
    cfg = DaskConfig.model_validate({"kind": "slurm", "slurm": {
        "queue": "cpu", "account": "lm", "cores": 16, "memory": "64GB", "walltime": "02:00:00",
        "job_extra_directives": ["--exclusive"]}})
    with slurm_cluster(cfg) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p cpu", "#SBATCH -A lm", "#SBATCH -n 1", "#SBATCH --cpus-per-task=16",
                 "#SBATCH -t 02:00:00", "#SBATCH --exclusive"):
        assert line in script
    assert "distributed.cli.dask_worker" in script and cluster.scheduler_address in script


def test_secrets_never_leave_in_params() -> None:
    from lmforge.infra.settings import redact

    assert redact("sources.0.paths", "['https://ann:s3cr3t@host/x.warc.gz']") == \
        "['https://***@host/x.warc.gz']"
    assert redact("dask.kubernetes.env.AWS_SECRET_ACCESS_KEY", "abc") == "***"
    assert redact("curate.pii.hash_salt", "pepper") == "***"  # hashed PII could be guessed
    assert redact("tracking.api_token", "xyz") == "***" and redact("db.password", "p") == "***"
    assert redact("evaluate.max_new_tokens", "32") == "32"
    assert redact("reddit.bot_authors", "['AutoModerator']") == "['AutoModerator']"


def test_unreachable_scheduler_says_what_to_do() -> None:
    from lmforge.infra.services import free_port

    cfg = DaskConfig(address=f"tcp://127.0.0.1:{free_port()}", connect_timeout="2s")
    with pytest.raises(ConnectionError, match="dask scheduler"), dask_cluster(cfg):
        pass


def test_log_records_lose_url_credentials_in_every_process(tmp_path) -> None:
    """Whoever logs (lmforge, Prefect, MLflow), on the flow process and on every Dask worker."""
    import io
    import logging

    from distributed import Client
    from lmforge.infra.services import _command
    from lmforge.infra.settings import install_log_redaction, redact_text

    assert redact_text("db at postgresql://ml:s3cr3t@db:5432/mlflow is down") == \
        "db at postgresql://***@db:5432/mlflow is down"
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    stream = io.StringIO()
    logger = logging.getLogger("lmforge.test.redaction")
    logger.addHandler(logging.StreamHandler(stream))
    logger.warning("cannot reach %s", "s3://AKIA:wJalr@bucket/x")
    logger.warning("no credentials in %s", "https://example.org/a@b")
    assert stream.getvalue().splitlines() == ["cannot reach s3://***@bucket/x",
                                              "no credentials in https://example.org/a@b"]

    with dask_cluster(DaskConfig(n_workers=1, dashboard_address=":0")) as info, \
            Client(info.address) as client:
        on_workers = client.run(lambda: getattr(logging.getLogRecordFactory(),
                                                "lmforge_redacts", False))
    assert list(on_workers.values()) == [True]

    # the MLflow server gets its store URI through the environment: argv is world-readable
    import os
    os.environ["LMFORGE_MLFLOW_BACKEND_URI"] = "postgresql://ml:s3cr3t@db/mlflow"
    try:
        cmd, env = _command("mlflow", 5000, tmp_path)
    finally:
        del os.environ["LMFORGE_MLFLOW_BACKEND_URI"]
    assert not any("s3cr3t" in part for part in cmd)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://ml:s3cr3t@db/mlflow"
