"""The replication client's authentication (trust, md5, SCRAM-SHA-256) and TLS negotiation."""

from __future__ import annotations

import asyncpg
import pytest

from etlsync.connectors.postgres.replication.conninfo import parse_dsn
from etlsync.connectors.postgres.replication.protocol import PgServerError, ReplicationConnection
from etlsync.core.errors import ServiceNotReady
from tests.conftest import PG_HOST, PG_PORT, TEST_DB

pytestmark = pytest.mark.integration

ROLES = {"etlsync_md5": ("md5", "md5-secret"), "etlsync_scram": ("scram-sha-256", "scram-secret")}


@pytest.fixture
async def roles(pg: asyncpg.Connection) -> dict[str, str]:
    for role, (method, password) in ROLES.items():
        await pg.execute(f"SET password_encryption = '{method}'")
        exists = await pg.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        try:
            await pg.execute(f"{verb} ROLE {role} LOGIN REPLICATION PASSWORD '{password}'")
        except asyncpg.DuplicateObjectError:
            await pg.execute(f"ALTER ROLE {role} LOGIN REPLICATION PASSWORD '{password}'")
    await pg.execute("RESET password_encryption")
    return {r: p for r, (_, p) in ROLES.items()}


async def _identify(user: str, password: str | None, sslmode: str = "disable") -> tuple[int, bool]:
    params = parse_dsn(None, host=PG_HOST, port=PG_PORT, user=user, database=TEST_DB,
                       password=password, sslmode=sslmode)
    conn = await ReplicationConnection(params).connect()
    try:
        _system, timeline, xlogpos, dbname = await conn.identify_system()
        assert dbname == TEST_DB and xlogpos > 0
        return timeline, conn.tls
    finally:
        await conn.close()


@pytest.mark.parametrize("user", sorted(ROLES))
async def test_password_authentication(roles: dict[str, str], user: str) -> None:
    timeline, tls = await _identify(user, roles[user])
    assert timeline >= 1 and tls is False
    with pytest.raises(PgServerError) as err:
        await _identify(user, "wrong")
    assert err.value.code == "28P01"
    assert "wrong" not in str(err.value)


async def test_trust_and_tls_negotiation(pg_dsn: str) -> None:
    ssl_on = await _server_ssl(pg_dsn)
    timeline, tls = await _identify("postgres", None, sslmode="prefer")
    assert timeline >= 1 and tls is ssl_on
    if ssl_on:
        assert (await _identify("postgres", None, sslmode="require"))[1] is True
    else:
        with pytest.raises(ServiceNotReady, match=r"refused TLS.*sslmode='require'"):
            await _identify("postgres", None, sslmode="require")


async def _server_ssl(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SHOW ssl") == "on")
    finally:
        await conn.close()
