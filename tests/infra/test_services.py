from __future__ import annotations

import socket

import pytest
from lmforge.infra import services


def test_session_services_answer_health(services_up) -> None:
    assert set(services_up) == {"prefect", "mlflow", "worker"}
    assert all(services.healthy(s) for s in services_up.values())
    cmd, env = services._worker_command(services_up["prefect"].api_url,
                                        services_up["mlflow"].api_url, services.state_dir())
    assert cmd[1:6] == ["worker", "start", "--pool", services.WORK_POOL, "--type"]
    assert env["PREFECT_API_URL"] == services_up["prefect"].api_url


def test_up_is_idempotent(services_up, lmforge_home) -> None:
    again = services.up(lmforge_home)
    assert {n: s.pid for n, s in again.items()} == {n: s.pid for n, s in services_up.items()}


def test_temporary_server_starts_and_stops(tmp_path) -> None:
    with services.temporary_prefect_server(tmp_path) as server:
        assert services.healthy(server)
        pid = server.pid
    assert not services._alive(pid)
    assert not services.healthy(server, timeout=0.5)


def test_busy_port_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port}"):
            services.up(tmp_path, prefect_port=port, mlflow_port=services.free_port())
    services.down(tmp_path)


def test_dead_server_fails_fast_with_its_log(tmp_path) -> None:
    dead = services.Service("prefect", services.free_port(), pid=999_999)
    (tmp_path / "prefect.log").write_text("boom: cannot open database")
    with pytest.raises(RuntimeError, match="cannot open database"):
        services.wait_healthy(dead, timeout=5, home=tmp_path)
