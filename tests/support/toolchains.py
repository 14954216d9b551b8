"""Toolchains the codegen tests compile and run generated code with, installed idempotently
where we may (root with apt-get; npm from the committed lockfile), else reported as missing.

Go: Debian's ``golang-go`` with the packaged drivers ``golang-github-lib-pq-dev`` and
``golang-github-go-sql-driver-mysql-dev`` (GOPATH mode, offline). Java: ``javac`` with
``libpostgresql-jdbc-java`` and ``libmariadb-java`` (jars in /usr/share/java). Node.js: ``node``
and ``npm ci`` in tests/codegen/node (pg, mysql2, knex, prettier from package-lock.json).
Run as ``python -m tests.support.toolchains`` to install and print the status.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parents[1] / "codegen" / "node"
GOCODE = Path("/usr/share/gocode")
JARS = [Path("/usr/share/java/postgresql.jar"), Path("/usr/share/java/mariadb-java-client.jar")]
GO_PACKAGES = ["golang-go", "golang-github-lib-pq-dev", "golang-github-go-sql-driver-mysql-dev"]
JAVA_PACKAGES = ["libpostgresql-jdbc-java", "libmariadb-java"]


def _run(cmd: list[str], timeout: float = 900, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,  # type: ignore[call-overload, no-any-return]
                          **kw)


def _apt_install(packages: list[str]) -> str | None:
    """Install Debian packages (root only); ``None`` on success, else why not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root or no apt-get: install " + " ".join(packages)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = _run(["apt-get", "install", "-y", "-q", *packages], env=env)
    if proc.returncode != 0:  # the package lists may be missing on a fresh machine
        _run(["apt-get", "update", "-q"], env=env)
        proc = _run(["apt-get", "install", "-y", "-q", *packages], env=env)
    return None if proc.returncode == 0 else f"apt-get install failed: {proc.stderr.strip()[-300:]}"


def _have_go() -> bool:
    return shutil.which("go") is not None and (GOCODE / "src/github.com/lib/pq").is_dir() and \
        (GOCODE / "src/github.com/go-sql-driver/mysql").is_dir()


@functools.cache
def ensure_go() -> str | None:
    """``None`` when Go and both drivers are there (installed if needed), else the reason."""
    if not _have_go():
        problem = _apt_install(GO_PACKAGES)
        if problem or not _have_go():
            return f"Go toolchain with packaged drivers missing ({problem or 'still missing'})"
    return None


@functools.cache
def ensure_java() -> str | None:
    if shutil.which("javac") is None:
        problem = _apt_install(["default-jdk-headless"])
        if problem or shutil.which("javac") is None:
            return f"javac missing ({problem or 'still missing'})"
    if not all(j.exists() for j in JARS):
        problem = _apt_install(JAVA_PACKAGES)
        if problem or not all(j.exists() for j in JARS):
            return f"JDBC driver jars missing ({problem or 'still missing'})"
    return None


def _node_ready() -> bool:
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    return stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime and \
        all((NODE_DIR / "node_modules" / name).is_dir() for name in ("pg", "mysql2", "knex"))


@functools.cache
def ensure_node() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        problem = _apt_install(["nodejs", "npm"])
        if problem or shutil.which("node") is None or shutil.which("npm") is None:
            return f"node/npm missing ({problem or 'still missing'})"
    if not _node_ready():
        proc = _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR)
        if proc.returncode != 0:
            return f"npm ci in {NODE_DIR} failed: {proc.stderr.strip()[-300:]}"
    return None


def prettier() -> str | None:
    """The prettier installed from the lockfile, if it is."""
    path = NODE_DIR / "node_modules" / ".bin" / "prettier"
    return str(path) if path.exists() else None


def ensure_all() -> dict[str, str | None]:
    return {"go": ensure_go(), "java": ensure_java(), "node": ensure_node()}


if __name__ == "__main__":
    for name, problem in ensure_all().items():
        print(f"{name}: {problem or 'ready'}")
