"""The embedded PostgreSQL's life as an operator sees it: `coalition db status | start | stop`,
what `serve` says about it, and a test session that stops the servers it started."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.cli.test_cli import env_with, run
from tests.reliability.helpers import ROOT, serve


def postgres_processes(pgdata: Path) -> list[int]:
    """PostgreSQL processes serving `pgdata` (the postmaster names it on its command line;
    its children are found through it)."""
    found: list[int] = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or []):
            found.append(process.pid)
            found.extend(child.pid for child in process.children(recursive=True))
    return found


def test_db_status_start_and_stop_manage_the_embedded_server(embedded_data_dir: Path) -> None:
    env = env_with(COALITION_DATA_DIR=str(embedded_data_dir))
    pgdata = embedded_data_dir / "pg"

    before = run(["db", "status"], env)
    assert before.returncode == 3, before.stderr  # pg_ctl's code for "not running"
    assert "not running" in before.stdout and "no cluster yet" in before.stdout

    assert run(["migrate"], env).returncode == 0  # any command starts it
    shown = run(["db", "status", "--json"], env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["running"] is True and status["embedded"] is True
    assert status["dataDir"] == str(pgdata.resolve())
    assert status["version"].startswith("16.")
    assert Path(status["socket"]).is_socket() and status["port"] == 5432
    pid = status["pid"]
    assert pid in postgres_processes(pgdata.resolve())

    text = run(["db", "status"], env)
    assert text.returncode == 0
    assert f"running (pid {pid})" in text.stdout and status["socket"] in text.stdout
    assert "keeps running after `coalition serve` exits" in text.stdout
    assert "coalition db stop" in text.stdout

    stopped = run(["db", "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded PostgreSQL (pid {pid})" in stopped.stdout
    assert postgres_processes(pgdata.resolve()) == []
    assert not Path(status["socket"]).exists()
    assert run(["db", "status"], env).returncode == 3
    again = run(["db", "stop"], env)
    assert again.returncode == 0 and "is not running" in again.stdout

    # `db start` brings the same cluster back, with what it held.
    started = run(["db", "start"], env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("started") and "running (pid" in started.stdout
    assert run(["migrate"], env).returncode == 0
    assert "already running" in run(["db", "start"], env).stdout


def test_db_commands_say_there_is_no_embedded_server_with_database_url(
    embedded_data_dir: Path,
) -> None:
    external = "postgresql://coalition:s3cret-pw@db.example.internal:5432/coalition"
    env = env_with(DATABASE_URL=external, COALITION_DATA_DIR=str(embedded_data_dir))

    status = run(["db", "status"], env)
    assert status.returncode == 0, status.stderr
    assert "DATABASE_URL is set" in status.stdout
    assert "no embedded server to manage" in status.stdout
    assert "db.example.internal" in status.stdout and "s3cret-pw" not in status.stdout
    as_json = json.loads(run(["db", "status", "--json"], env).stdout)
    assert as_json == {
        "embedded": False,
        "databaseUrl": "postgresql://coalition:***@db.example.internal:5432/coalition",
    }
    for command in ("stop", "start"):
        refused = run(["db", command], env)
        assert refused.returncode == 1
        assert "no embedded server to manage" in refused.stderr
    assert not (embedded_data_dir / "pg").exists()  # nothing was started or created


def test_serve_says_the_embedded_server_outlives_it_and_db_stop_ends_it(
    embedded_data_dir: Path,
) -> None:
    log = embedded_data_dir.parent / "serve.log"
    served = serve(data_dir=embedded_data_dir, log=log, database_url=None)
    env = env_with(COALITION_DATA_DIR=str(embedded_data_dir))
    try:
        pid = json.loads(run(["db", "status", "--json"], env).stdout)["pid"]
        started = log.read_text()
        assert "the embedded PostgreSQL 16" in started and f"(pid {pid}," in started
        assert "It keeps running after serve exits" in started
        assert "`coalition db stop` stops it" in started

        # Stopping it under a running server: its connections are closed, it answers 503
        # meanwhile, and it recovers once the database is started again.
        stopped = run(["db", "stop"], env)
        assert stopped.returncode == 0, stopped.stderr
        assert "open connection(s) were closed" in stopped.stdout
        assert httpx.get(f"{served.base_url}/healthz", timeout=10).status_code == 503
        assert run(["db", "start"], env).returncode == 0
        assert httpx.get(f"{served.base_url}/healthz", timeout=10).status_code == 200
        pid = json.loads(run(["db", "status", "--json"], env).stdout)["pid"]
    finally:
        served.stop()
    assert served.process.returncode is not None
    ended = log.read_text()
    assert f"The embedded PostgreSQL (pid {pid}) is still running" in ended
    after = run(["db", "status", "--json"], env)
    assert after.returncode == 0 and json.loads(after.stdout)["pid"] == pid


def _pytest_session(pgdata: Path) -> subprocess.CompletedProcess[str]:
    """A test session of its own (one small test that takes the `database_url` fixture) on
    the embedded cluster `pgdata`."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["COALITION_TEST_PGDATA"] = str(pgdata)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/cli/test_cli.py::test_clients_create_refuses_bad_arguments",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_test_session_stops_the_embedded_server_it_started_and_no_other(
    embedded_data_dir: Path,
) -> None:
    pgdata = (embedded_data_dir / "pg").resolve()
    session = _pytest_session(pgdata)
    assert session.returncode == 0, session.stdout + session.stderr
    assert re.search(r"\b1 passed\b", session.stdout)
    assert (pgdata / "PG_VERSION").exists()  # it did run on this cluster...
    assert postgres_processes(pgdata) == []  # ...and stopped it

    # A server that was running before the session is left running.
    env = env_with(COALITION_DATA_DIR=str(embedded_data_dir))
    assert run(["db", "start"], env).returncode == 0
    pid = json.loads(run(["db", "status", "--json"], env).stdout)["pid"]
    session = _pytest_session(pgdata)
    assert session.returncode == 0, session.stdout + session.stderr
    assert json.loads(run(["db", "status", "--json"], env).stdout)["pid"] == pid
