"""Developer sessions: tests, lint, typecheck, benchmarks (``nox -s NAME``)."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src/etlsync")


@nox.session
def benchmarks(session: nox.Session) -> None:
    session.install("-e", ".[dev,bench]")
    rows = session.posargs[0] if session.posargs else "1000000"
    for script in ("kernel", "operators", "sqlite_load", "postgres_load", "postgres_cdc",
                   "mysql_load", "mysql_cdc", "mongo_cdc", "resilience"):
        session.run("python", f"benchmarks/{script}.py", "--rows", rows, "--json")
