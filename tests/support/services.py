"""Configure and start the local services the integration tests need, idempotently.

Run as ``python -m tests.support.services`` or let ``tests/conftest.py`` call
:func:`ensure_services` once per session. Only local servers are touched, and only
when the server's control command exists and we may run it (root): on a user's
machine without them, the integration tests skip with a reason instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

PG_HBA_MARKER = "# etlsync-tests"
PG_HBA_LINES = [
    PG_HBA_MARKER,
    "host all etlsync_md5 127.0.0.1/32 md5",
    "host replication etlsync_md5 127.0.0.1/32 md5",
    "host all etlsync_scram 127.0.0.1/32 scram-sha-256",
    "host replication etlsync_scram 127.0.0.1/32 scram-sha-256",
    "local replication all trust",
    "host replication all 127.0.0.1/32 trust",
    "host replication all ::1/128 trust",
    PG_HBA_MARKER + "-end",
]
PG_SETTINGS = {"wal_level": "logical", "max_replication_slots": "64", "max_wal_senders": "64"}
MARIADB_CNF = Path("/etc/my.cnf")
MARIADB_SETTINGS = {
    "server_id": "1",
    "log_bin": "mysql-bin",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
    "local_infile": "1",
    "gtid_strict_mode": "0",
}


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload, no-any-return]


def _psql(sql: str) -> str | None:
    if shutil.which("psql") is None:
        return None
    proc = _run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", sql])
    return proc.stdout.strip() if proc.returncode == 0 else None


def _pg_wait(seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _psql("select 1") == "1":
            return True
        time.sleep(0.3)
    return False


def ensure_postgres() -> str:
    """Make the local PostgreSQL ready for logical replication tests; return a status line."""
    ctl = shutil.which("pg_ctlcluster")
    if _psql("select 1") != "1":
        if ctl is None or os.geteuid() != 0:
            return "postgres: not reachable and cannot be started here"
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if not versions:
            return "postgres: not installed"
        _run([ctl, "--skip-systemctl-redirect", versions[-1], "main", "start"])
        if not _pg_wait():
            return "postgres: failed to start"
    if ctl is None or os.geteuid() != 0:
        return "postgres: reachable (not configured: no pg_ctlcluster or not root)"
    hba = _psql("show hba_file")
    restart = False
    for name, value in PG_SETTINGS.items():
        current = _psql(f"show {name}")
        if current != value:
            _psql(f"alter system set {name} = '{value}'")
            restart = True
    reload = False
    if hba:
        path = Path(hba)
        text = path.read_text()
        if PG_HBA_MARKER not in text:
            path.write_text("\n".join(PG_HBA_LINES) + "\n" + text)
            reload = True
    version = (_psql("show server_version_num") or "150000")[:2]
    if restart:
        _run([ctl, "--skip-systemctl-redirect", version, "main", "restart"])
        if not _pg_wait():
            return "postgres: failed to restart"
    elif reload:
        _psql("select pg_reload_conf()")
    return f"postgres: ready (wal_level={_psql('show wal_level')})"


def _mariadb(sql: str) -> str | None:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        return None
    proc = _run([client, "-h", "127.0.0.1", "-uroot", "-N", "-B", "-e", sql])
    return proc.stdout.strip() if proc.returncode == 0 else None


def _mariadb_wait(seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _mariadb("select 1") == "1":
            return True
        time.sleep(0.3)
    return False


def ensure_mariadb() -> str:
    """Make the local MariaDB write a ROW binlog with full metadata; return a status line."""
    daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    can_control = os.path.exists(daemon) and os.geteuid() == 0
    if _mariadb("select 1") != "1":
        if not can_control:
            return "mariadb: not reachable and cannot be started here"
        _start_mariadb(daemon)
        if not _mariadb_wait():
            return "mariadb: failed to start"
    if not can_control:
        return "mariadb: reachable (not configured: not root)"
    wanted = "[mysqld]\n" + "".join(f"{k} = {v}\n" for k, v in MARIADB_SETTINGS.items())
    if not MARIADB_CNF.exists() or MARIADB_CNF.read_text() != wanted:
        MARIADB_CNF.write_text(wanted)
    if _mariadb("select @@log_bin") != "1":
        _run(["start-stop-daemon", "--stop", "--oknodo", "--exec", daemon, "--retry", "30"])
        _start_mariadb(daemon)
        if not _mariadb_wait():
            return "mariadb: failed to restart"
    for name in ("binlog_format", "binlog_row_image", "binlog_row_metadata"):
        if _mariadb(f"select @@global.{name}") != MARIADB_SETTINGS[name]:
            _mariadb(f"set global {name} = '{MARIADB_SETTINGS[name]}'")
    return f"mariadb: ready (log_bin={_mariadb('select @@log_bin')})"


def _start_mariadb(daemon: str) -> None:
    Path("/run/mysqld").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/mysqld", "mysql", "mysql")
    _run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", daemon])


def ensure_services() -> list[str]:
    """Configure every local service the tests use; never raises."""
    if os.environ.get("ETLSYNC_SETUP_SERVICES", "1") == "0":
        return ["services: setup disabled by ETLSYNC_SETUP_SERVICES=0"]
    status = []
    for step in (ensure_postgres, ensure_mariadb):
        try:
            status.append(step())
        except Exception as exc:  # noqa: BLE001 - report, the tests decide
            status.append(f"{step.__name__}: {exc!r}")
    return status


if __name__ == "__main__":
    for line in ensure_services():
        print(line)
