"""``python3 -m pytest -m "not integration"`` runs the unit tests alone.

A test asking for a service fixture gets the ``integration`` marker (``tests/conftest.py``).
``tests.support.unit_check`` runs the unit selection with every service unreachable and
``CI=true`` (a missing service fails a test), so it passes only if no unit test touches a
service; the last test below runs it, the first checks that the check can fail.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.unit_check import ROOT, unreachable_env


def test_the_unreachable_services_fail_an_integration_test_and_pass_unit_tests() -> None:
    """The check can fail: an integration test run under it fails (its service is gone),
    while unit tests of the same files pass."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        env = {**unreachable_env(closed.getsockname()[1]), "PYTHONPATH": str(ROOT / "src")}
        target = "tests/contracts/test_sinks.py::test_append_adds_every_row_of_every_run"
        failing = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{target}[postgres]"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        passing = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
             "not integration", target], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=300)
    assert failing.returncode == 1 and "required service unavailable" in failing.stdout, \
        failing.stdout[-2000:]
    assert passing.returncode == 0 and "deselected" in passing.stdout, passing.stdout[-2000:]


@pytest.mark.integration  # not itself a unit test: it runs them (and must not run itself)
def test_the_unit_tests_run_with_every_service_unreachable() -> None:
    """The whole ``-m "not integration"`` selection passes with PostgreSQL, MariaDB and
    MongoDB unreachable and ``CI=true`` (a unit test that touched a service would fail)."""
    from tests.support.unit_check import main

    assert main(["-q", "-p", "no:cacheprovider", "-x"]) == 0
