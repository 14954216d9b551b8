"""Connection settings: passwords from env or secret files, TLS options, no secrets shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from etlsync import ConfigError
from etlsync.connectors.postgres import PgConnectionConfig, PostgresCheckpointStore, qualified
from etlsync.core.checkpoint import Checkpoint


def test_password_from_env_is_used_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PG_SECRET", "s3cr3t")
    cfg = PgConnectionConfig(host="db", user="u", database="d", password_env="MY_PG_SECRET")
    assert cfg.connect_kwargs()["password"] == "s3cr3t"
    assert "s3cr3t" not in repr(cfg) and "s3cr3t" not in str(cfg)


def test_password_file_wins_and_missing_env_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert PgConnectionConfig(password_file=str(secret)).password() == "from-file"
    monkeypatch.delenv("NOPE_PG", raising=False)
    with pytest.raises(ConfigError, match="NOPE_PG"):
        PgConnectionConfig(password_env="NOPE_PG").password()


def test_tls_modes_map_to_ssl_contexts(tmp_path: Path) -> None:
    assert PgConnectionConfig(sslmode="disable").ssl_context() == "disable"
    ctx = PgConnectionConfig(sslmode="require", sslcert=None).ssl_context()
    assert ctx == "require"
    with pytest.raises(ConfigError, match="sslmode"):
        PgConnectionConfig(sslmode="sometimes")
    ca = ssl.get_default_verify_paths().cafile
    if ca is None:
        pytest.skip("no system CA bundle to use as sslrootcert")
    full = PgConnectionConfig(sslmode="verify-full", sslrootcert=ca).ssl_context()
    assert isinstance(full, ssl.SSLContext) and full.check_hostname
    vca = PgConnectionConfig(dsn=f"postgresql://h/d?sslmode=verify-ca&sslrootcert={ca}")
    kw = vca.connect_kwargs()
    assert isinstance(kw["ssl"], ssl.SSLContext) and not kw["ssl"].check_hostname
    assert "sslrootcert" not in kw["dsn"]


def test_identifiers_are_quoted() -> None:
    assert qualified("s", 'a"b; x') == '"s"."a""b; x"'
    with pytest.raises(ConfigError):
        qualified("s", "nul\x00")


@pytest.mark.integration
async def test_checkpoint_store_round_trips_positions(pg_dsn: str, table: str) -> None:
    import datetime as dt
    from decimal import Decimal

    store = PostgresCheckpointStore(pg_dsn)
    try:
        assert await store.load(table) is None
        pos = {"streams": {"t": {"wm": {"cursor": dt.datetime(2024, 5, 1, 12, 0),
                                        "keys": [(1, "a")]}, "n": Decimal("1.10")}}}
        await store.commit(table, Checkpoint(pos, pass_open=False))
        assert await store.load(table) == Checkpoint(pos, pass_open=False)
        await store.reset(table)
        assert await store.load(table) is None
    finally:
        await store.close()
