"""Run the unit tests (``pytest -m "not integration"``) with every service unreachable.

PostgreSQL, MariaDB and MongoDB are pointed at a port that is bound but never listens (every
connection is refused), service setup is off, and ``CI=true`` makes a test that finds its
service missing fail instead of skipping: the run passes only if no unit test touches a service.
``tests/contracts/test_markers.py`` runs it as part of the suite; by hand:
``python3 -m tests.support.unit_check [pytest args]``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unreachable_env(port: int) -> dict[str, str]:
    """The environment of a run whose services all live at ``127.0.0.1:port``."""
    p = str(port)
    return {**os.environ, "CI": "true", "ETLSYNC_SETUP_SERVICES": "0",
            "ETLSYNC_TEST_PG_HOST": "127.0.0.1", "ETLSYNC_TEST_PG_PORT": p,
            "ETLSYNC_TEST_MYSQL_HOST": "127.0.0.1", "ETLSYNC_TEST_MYSQL_PORT": p,
            "PGHOST": "127.0.0.1", "PGPORT": p,
            "ETLSYNC_MONGO_URI": f"mongodb://127.0.0.1:{p}/?serverSelectionTimeoutMS=300"}


def main(args: list[str]) -> int:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        env = unreachable_env(closed.getsockname()[1])
        # this tree's code, whatever an editable install elsewhere points at
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH")) if p)
        return subprocess.call([sys.executable, "-m", "pytest", "-m", "not integration", *args],
                               cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
