"""The state database of ``etlsync serve``: run history, schedules, leases, alert folding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etlsync.core.errors import ConfigError
from etlsync.service.state.records import LogLine, RunRecord, RunStatus, iso
from etlsync.service.state.store import (
    Database,
    StateStore,
    effective_status,
    live_instance_ids,
    process_alive,
)

__all__ = ["Database", "LogLine", "RunRecord", "RunStatus", "StateStore", "effective_status",
           "iso", "live_instance_ids", "open_state", "process_alive"]

DEFAULT_STATE = ".etlsync/serve.db"


def open_state(url: str | None, root: Path, **pg: Any) -> StateStore:
    """The store at ``url``: a SQLite path (relative to ``root``; default
    ``.etlsync/serve.db``) or a ``postgresql://`` URI (``pg``: ``password_env``,
    ``password_file``, ``sslmode``, ``sslrootcert``, ``schema``: where its tables live)."""
    if url is None or not url.startswith(("postgres://", "postgresql://")):
        text = url.removeprefix("sqlite://").removeprefix("sqlite:") if url else DEFAULT_STATE
        p = Path(text).expanduser()
        from etlsync.service.state.sqlite import SqliteDatabase

        return StateStore(SqliteDatabase(p if p.is_absolute() else root / p))
    try:
        from etlsync.connectors.postgres.connection import PgConnectionConfig
        from etlsync.service.state.postgres import PostgresDatabase
    except ImportError as exc:
        raise ConfigError(f"state.url: a PostgreSQL state database needs asyncpg "
                          f"(pip install 'etlsync[postgres]'): {exc}") from None
    given = {k: v for k, v in pg.items() if v is not None}
    schema = given.pop("schema", None)
    if schema is not None:
        given["server_settings"] = {"search_path": schema}
    return StateStore(PostgresDatabase(PgConnectionConfig(dsn=url, **given), schema=schema))
