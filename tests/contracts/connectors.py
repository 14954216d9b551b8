"""The connectors the contract suite runs against: one factory per sink and per source.

This is the one place a new connector joins the suite (docs/testing.md, "Adding a connector to
the contract suite"): write a :class:`SinkTarget` (or :class:`SourceOrigin`) subclass that says
where a fresh target (or origin) lives and how to read it back (or fill it), and add a
:class:`SinkFactory` (or :class:`SourceFactory`) line to ``SINKS`` (or ``SOURCES``). What the
connector can do (write modes, conflict strategies, schema policies, changes, passes,
exactly-once) is read from its manifest and its capabilities, never listed here.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etlsync.core.batch import Row

Env = dict[str, Any]
"""The values of the service fixtures a factory asked for (``{"pg_dsn": ...}``)."""


@asynccontextmanager
async def mongo_client(env: Env) -> AsyncIterator[Any]:
    """A client of the test server, closed afterwards."""
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(env["mongo_uri"])
    try:
        yield client
    finally:
        await client.close()


# -- sinks ----------------------------------------------------------------------------------

class SinkTarget:
    """One fresh target (a table, a collection, a file) of one sink type, for one test.

    :param name: a unique name for this test (tables and collections are called after it).
    :param tmp: a directory of this test's own.
    :param env: the service fixtures the factory asked for.
    """

    def __init__(self, name: str, tmp: Path, env: Env) -> None:
        self.name, self.tmp, self.env = name, tmp, env

    def location(self, table: str) -> dict[str, Any]:
        """The sink options (besides ``type`` and write settings) that point at ``table``."""
        raise NotImplementedError

    async def rows(self, table: str) -> list[Row] | None:
        """What ``table`` holds now (``None``: it does not exist)."""
        raise NotImplementedError

    async def count(self, table: str) -> int:
        """Rows in ``table`` now (0 while it does not exist)."""
        return len(await self.rows(table) or [])

    async def leftovers(self, table: str) -> list[str]:
        """Staging tables or temporary files an installed overwrite must not leave behind."""
        return []

    async def cleanup(self) -> None:
        """Drop what the test made on a shared server."""


@dataclass(frozen=True)
class SinkFactory:
    """A sink type in the suite: ``type`` is its job-file name (its manifest entry)."""

    id: str
    type: str
    target: Callable[[str, Path, Env], SinkTarget]
    fixtures: tuple[str, ...] = ()
    """Service fixtures it needs (requested lazily: only its own tests start the service)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Fixed options every sink of this factory gets (e.g. a key field)."""
    text_only: bool = False
    """The target stores text only (CSV): values are compared as text, NULL as empty."""
    keeps_changes: bool = False
    """A test collector that keeps change batches as they are (it applies nothing)."""
    hostile_tables: bool = True
    """Table (collection) names are identifiers it quotes (files: paths, not identifiers)."""
    reserved: str = ""
    """Characters the server forbids in names (MongoDB: '$' in collections, '.' in fields)."""
    xfail: dict[str, str] = field(default_factory=dict)
    """Known defects: test name -> reason; the test is expected to fail (strict xfail)."""


class SqliteTarget(SinkTarget):
    @property
    def path(self) -> Path:
        return self.tmp / "target.db"

    def location(self, table: str) -> dict[str, Any]:
        return {"path": str(self.path), "table": table}

    async def rows(self, table: str) -> list[Row] | None:
        if not self.path.exists():
            return None
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (table,)).fetchone():
                return None
            quoted = '"' + table.replace('"', '""') + '"'
            return [dict(r) for r in conn.execute(f"SELECT * FROM {quoted}")]
        finally:
            conn.close()

    async def count(self, table: str) -> int:
        if not self.path.exists():
            return 0
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()

    async def leftovers(self, table: str) -> list[str]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(self.path)
        try:
            return [n for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '_etlsync_stage%'")]
        finally:
            conn.close()


def _pg_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresTarget(SinkTarget):
    def __init__(self, name: str, tmp: Path, env: Env) -> None:
        super().__init__(name, tmp, env)
        self.tables: set[str] = set()

    def location(self, table: str) -> dict[str, Any]:
        self.tables.add(table)
        return {"connection": self.env["pg_dsn"], "table": table}

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.env["pg_dsn"])
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def rows(self, table: str) -> list[Row] | None:
        exists = await self._fetch("SELECT to_regclass($1) IS NOT NULL AS e",
                                   f"public.{_pg_quote(table)}")
        if not exists[0]["e"]:
            return None
        return [dict(r) for r in await self._fetch(f"SELECT * FROM public.{_pg_quote(table)}")]

    async def count(self, table: str) -> int:
        import asyncpg

        try:
            found = await self._fetch(f"SELECT count(*) AS n FROM public.{_pg_quote(table)}")
        except asyncpg.UndefinedTableError:
            return 0
        return int(found[0]["n"])

    async def leftovers(self, table: str) -> list[str]:
        found = await self._fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
            "(tablename LIKE '%\\_\\_etlsync\\_new' OR tablename LIKE '\\_etlsync\\_stage\\_%') "
            "AND tablename LIKE $1", table[:40] + "%")
        return [r["tablename"] for r in found]

    async def cleanup(self) -> None:
        for t in self.tables - {t for t in self.tables if "\x00" in t}:
            for name in (t, f"{t[:40]}__etlsync_new"):
                await self._fetch(f"DROP TABLE IF EXISTS public.{_pg_quote(name)}")
        await self._fetch("DELETE FROM public._etlsync_state WHERE pipeline LIKE $1",
                          self.name + "%")


def _my_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MysqlTarget(SinkTarget):
    def __init__(self, name: str, tmp: Path, env: Env) -> None:
        super().__init__(name, tmp, env)
        self.tables: set[str] = set()

    @property
    def connection(self) -> dict[str, Any]:
        p = self.env["mysql_params"]
        return {"host": p["host"], "port": p["port"], "user": p["user"], "database": p["db"]}

    def location(self, table: str) -> dict[str, Any]:
        self.tables.add(table)
        return {"connection": self.connection, "table": table}

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        import aiomysql

        from etlsync.connectors.mysql.config import MysqlOptions, connect

        conn = await connect(MysqlOptions.from_params(self.env["mysql_params"]))
        try:
            async with conn.cursor(aiomysql.DictCursor) as cur:
                await cur.execute(sql, args or None)
                return list(await cur.fetchall())
        finally:
            conn.close()

    async def rows(self, table: str) -> list[Row] | None:
        db = self.env["mysql_params"]["db"]
        found = await self._fetch("SELECT 1 FROM information_schema.tables WHERE "
                                  "table_schema = %s AND table_name = %s", db, table)
        if not found:
            return None
        return await self._fetch(f"SELECT * FROM {_my_quote(table)}")

    async def count(self, table: str) -> int:
        if await self.rows_exist(table):
            return int((await self._fetch(f"SELECT count(*) AS n FROM {_my_quote(table)}"))[0]["n"])
        return 0

    async def rows_exist(self, table: str) -> bool:
        return bool(await self._fetch("SELECT 1 FROM information_schema.tables WHERE "
                                      "table_schema = %s AND table_name = %s",
                                      self.env["mysql_params"]["db"], table))

    async def leftovers(self, table: str) -> list[str]:
        db = self.env["mysql_params"]["db"]
        found = await self._fetch("SELECT table_name AS t FROM information_schema.tables WHERE "
                                  "table_schema = %s AND table_name IN (%s, %s)", db,
                                  f"{table}__etlsync_new", f"{table}__etlsync_old")
        return [r["t"] for r in found]

    async def cleanup(self) -> None:
        for t in self.tables - {t for t in self.tables if "\x00" in t}:
            for name in (t, f"{t}__etlsync_new", f"{t}__etlsync_old"):
                await self._fetch(f"DROP TABLE IF EXISTS {_my_quote(name)}")
        await self._fetch("DELETE FROM _etlsync_state WHERE pipeline LIKE %s", self.name + "%")


class MongoTarget(SinkTarget):
    """A collection in a database of this test's own (key field ``id``; the checkpoint in
    the ``_etlsync_state`` collection, in each write's transaction)."""

    def location(self, table: str) -> dict[str, Any]:
        return {"connection": self.env["mongo_uri"], "database": self.name, "collection": table}

    async def rows(self, table: str) -> list[Row] | None:
        async with mongo_client(self.env) as client:
            db = client[self.name]
            if table not in await db.list_collection_names():
                return None
            return [d async for d in db[table].find({}, {"_id": 0})]

    async def count(self, table: str) -> int:
        async with mongo_client(self.env) as client:
            return int(await client[self.name][table].count_documents({}))

    async def leftovers(self, table: str) -> list[str]:
        async with mongo_client(self.env) as client:
            names = await client[self.name].list_collection_names()
            return [n for n in names if n not in (table, "_etlsync_state") and table in n]

    async def cleanup(self) -> None:
        async with mongo_client(self.env) as client:
            await client.drop_database(self.name)


class FileTarget(SinkTarget):
    suffix = ""

    def file(self, table: str) -> Path:
        return self.tmp / f"{table}{self.suffix}"

    def location(self, table: str) -> dict[str, Any]:
        return {"path": str(self.file(table))}

    async def rows(self, table: str) -> list[Row] | None:
        path = self.file(table)
        return self.read(path) if path.exists() else None

    def read(self, path: Path) -> list[Row]:
        raise NotImplementedError

    async def leftovers(self, table: str) -> list[str]:
        return [p.name for p in self.tmp.glob(f"{table}{self.suffix}.etlsync-tmp*")]


class CsvTarget(FileTarget):
    suffix = ".csv"

    def read(self, path: Path) -> list[Row]:
        with path.open(newline="", encoding="utf-8") as f:
            return [{k: (v if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]


class JsonlTarget(FileTarget):
    suffix = ".jsonl"

    def read(self, path: Path) -> list[Row]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]


class ParquetTarget(FileTarget):
    suffix = ".parquet"

    def read(self, path: Path) -> list[Row]:
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())


class MemoryTarget(SinkTarget):
    """The collecting test sink: its rows are those of every sink built for the target."""

    def __init__(self, name: str, tmp: Path, env: Env) -> None:
        super().__init__(name, tmp, env)
        self.sinks: list[Any] = []

    def location(self, table: str) -> dict[str, Any]:
        return {}

    def built(self, sink: Any) -> None:
        self.sinks.append(sink)

    async def rows(self, table: str) -> list[Row] | None:
        return [r for s in self.sinks for r in s.rows] if self.sinks else None


PG_UPSERT_WITHOUT_KEY = (
    "PostgresSink: an upsert into a table without a unique key on primary_key fails with the "
    "server's 'no unique or exclusion constraint matching the ON CONFLICT' (SqliteSink adds "
    "the unique index)")
MYSQL_UPSERT_WITHOUT_KEY = (
    "MysqlSink: an upsert into a table without a unique key on primary_key inserts a second "
    "row per key (ON DUPLICATE KEY UPDATE finds no key): silent duplicates")
MONGO_OVERWRITE = (
    "MongoSink overwrite empties the collection on its first write (no staging collection "
    "swapped in at the end of the pass): a stopped run loses the old data")

KEYLESS = "test_upsert_into_a_table_without_a_key_on_primary_key"
STOP = "test_a_stop_mid_pass_keeps_the_old_data_and_the_next_run_installs_the_pass"

SINKS: tuple[SinkFactory, ...] = (
    SinkFactory("sqlite", "sqlite", SqliteTarget),
    SinkFactory("postgres", "postgres", PostgresTarget, ("pg_dsn",),
                xfail={KEYLESS: PG_UPSERT_WITHOUT_KEY}),
    SinkFactory("postgres-at-least-once", "postgres", PostgresTarget, ("pg_dsn",),
                {"exactly_once": False}, xfail={KEYLESS: PG_UPSERT_WITHOUT_KEY}),
    SinkFactory("mysql", "mysql", MysqlTarget, ("mysql_params",),
                xfail={KEYLESS: MYSQL_UPSERT_WITHOUT_KEY}),
    SinkFactory("mongo", "mongo", MongoTarget, ("mongo_uri",),
                {"primary_key": ["id"], "state_collection": "_etlsync_state"}, reserved=".$",
                xfail={STOP: MONGO_OVERWRITE}),
    SinkFactory("mongo-at-least-once", "mongo", MongoTarget, ("mongo_uri",),
                {"primary_key": ["id"]}, reserved=".$", xfail={STOP: MONGO_OVERWRITE}),
    SinkFactory("csv", "csv", CsvTarget, text_only=True, hostile_tables=False),
    SinkFactory("jsonl", "jsonl", JsonlTarget, hostile_tables=False),
    SinkFactory("parquet", "parquet", ParquetTarget, hostile_tables=False),
    SinkFactory("memory", "collect", MemoryTarget, keeps_changes=True, hostile_tables=False),
)


# -- sources --------------------------------------------------------------------------------

class SourceOrigin:
    """Where one source type reads from, fresh for one test: :meth:`add` writes rows there,
    :meth:`spec` gives the job-file options of a source reading them."""

    def __init__(self, name: str, tmp: Path, env: Env) -> None:
        self.name, self.tmp, self.env = name, tmp, env

    async def add(self, rows: Sequence[Row]) -> None:
        """Append ``rows`` (columns ``id`` integer, ``name`` text, ``v`` integer)."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The source's options (besides ``type``, ``batch_size`` and sync settings)."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        """Drop what the test made on a shared server."""


@dataclass(frozen=True)
class SourceFactory:
    id: str
    type: str
    origin: Callable[[str, Path, Env], SourceOrigin]
    fixtures: tuple[str, ...] = ()
    text_only: bool = False
    """Values arrive as text (CSV)."""


class _FileOrigin(SourceOrigin):
    suffix = ""

    @property
    def path(self) -> Path:
        return self.tmp / f"{self.name}{self.suffix}"

    def spec(self) -> dict[str, Any]:
        return {"path": str(self.path)}


class CsvOrigin(_FileOrigin):
    suffix = ".csv"

    async def add(self, rows: Sequence[Row]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["id", "name", "v"])
            w.writerows([r["id"], r["name"], r["v"]] for r in rows)


class JsonlOrigin(_FileOrigin):
    suffix = ".jsonl"

    async def add(self, rows: Sequence[Row]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


class ParquetOrigin(_FileOrigin):
    """A glob of Parquet files (a file cannot be appended to: each ``add`` writes one)."""

    suffix = ".parquet"

    def spec(self) -> dict[str, Any]:
        return {"path": str(self.tmp / "parts" / "*.parquet"), "stream": self.name}

    async def add(self, rows: Sequence[Row]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = self.tmp / "parts"
        parts.mkdir(exist_ok=True)
        n = len(list(parts.glob("*.parquet")))
        pq.write_table(pa.Table.from_pylist(list(rows)), parts / f"{n:04d}.parquet",
                       row_group_size=7)


class SqliteOrigin(SourceOrigin):
    @property
    def path(self) -> Path:
        return self.tmp / "origin.db"

    def spec(self) -> dict[str, Any]:
        return {"path": str(self.path), "table": self.name}

    async def add(self, rows: Sequence[Row]) -> None:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.name}" '
                         "(id INTEGER PRIMARY KEY, name TEXT, v INTEGER)")
            conn.executemany(f'INSERT INTO "{self.name}" VALUES (:id, :name, :v)', rows)
            conn.commit()
        finally:
            conn.close()


class PostgresOrigin(SourceOrigin):
    def spec(self) -> dict[str, Any]:
        return {"connection": self.env["pg_dsn"], "table": self.name}

    async def add(self, rows: Sequence[Row]) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.env["pg_dsn"])
        try:
            await conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.name}" '
                               "(id bigint PRIMARY KEY, name text, v bigint)")
            await conn.executemany(f'INSERT INTO "{self.name}" VALUES ($1, $2, $3)',
                                   [(r["id"], r["name"], r["v"]) for r in rows])
        finally:
            await conn.close()

    async def cleanup(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.env["pg_dsn"])
        try:
            await conn.execute(f'DROP TABLE IF EXISTS "{self.name}"')
        finally:
            await conn.close()


class MysqlOrigin(SourceOrigin):
    def spec(self) -> dict[str, Any]:
        p = self.env["mysql_params"]
        return {"connection": {"host": p["host"], "port": p["port"], "user": p["user"],
                               "database": p["db"]}, "tables": [self.name]}

    async def _execute(self, sql: str, args: Sequence[Any] | None = None, many: bool = False
                       ) -> None:
        from etlsync.connectors.mysql.config import MysqlOptions, connect

        conn = await connect(MysqlOptions.from_params(self.env["mysql_params"]))
        try:
            async with conn.cursor() as cur:
                await (cur.executemany(sql, args) if many else cur.execute(sql, args))
        finally:
            conn.close()

    async def add(self, rows: Sequence[Row]) -> None:
        await self._execute(f"CREATE TABLE IF NOT EXISTS `{self.name}` "
                            "(id bigint PRIMARY KEY, name varchar(40), v bigint)")
        await self._execute(f"INSERT INTO `{self.name}` VALUES (%s, %s, %s)",
                            [(r["id"], r["name"], r["v"]) for r in rows], many=True)

    async def cleanup(self) -> None:
        await self._execute(f"DROP TABLE IF EXISTS `{self.name}`")


class MongoOrigin(SourceOrigin):
    def spec(self) -> dict[str, Any]:
        return {"connection": self.env["mongo_uri"], "database": self.name,
                "collections": ["rows"]}

    async def add(self, rows: Sequence[Row]) -> None:
        async with mongo_client(self.env) as client:
            await client[self.name]["rows"].insert_many(
                [{"_id": r["id"], **r} for r in rows])

    async def cleanup(self) -> None:
        async with mongo_client(self.env) as client:
            await client.drop_database(self.name)


class MemoryOrigin(SourceOrigin):
    """The test source: its rows are given in the job file itself."""

    def __init__(self, name: str, tmp: Path, env: Env) -> None:
        super().__init__(name, tmp, env)
        self.given: list[Row] = []

    async def add(self, rows: Sequence[Row]) -> None:
        self.given.extend(rows)

    def spec(self) -> dict[str, Any]:
        return {"rows": list(self.given)}


SOURCES: tuple[SourceFactory, ...] = (
    SourceFactory("csv", "csv", CsvOrigin, text_only=True),
    SourceFactory("jsonl", "jsonl", JsonlOrigin),
    SourceFactory("parquet", "parquet", ParquetOrigin),
    SourceFactory("sqlite", "sqlite", SqliteOrigin),
    SourceFactory("postgres", "postgres", PostgresOrigin, ("pg_dsn",)),
    SourceFactory("mysql", "mysql", MysqlOrigin, ("mysql_params",)),
    SourceFactory("mongo", "mongo", MongoOrigin, ("mongo_uri",)),
    SourceFactory("memory", "memory", MemoryOrigin),
)


# -- change-data-capture sources ------------------------------------------------------------

class CdcOrigin(SourceOrigin):
    """A table (collection) a CDC source captures: :meth:`add` inserts rows in transactions
    of a few rows each, before a run (snapshot) or between runs (the stream)."""

    async def add(self, rows: Sequence[Row]) -> None:
        for i in range(0, len(rows), 4):
            await self.insert(rows[i:i + 4])

    async def insert(self, rows: Sequence[Row]) -> None:
        """Insert ``rows`` in one transaction."""
        raise NotImplementedError


class PostgresCdcOrigin(CdcOrigin):
    def spec(self) -> dict[str, Any]:
        return {"connection": self.env["pg_dsn"], "slot": f"{self.name}_slot",
                "publication": f"{self.name}_pub", "tables": [f"public.{self.name}"],
                "snapshot_chunk_rows": 7, "batch_rows": 7, "status_interval": 0.5}

    async def insert(self, rows: Sequence[Row]) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.env["pg_dsn"])
        try:
            await conn.execute(f'CREATE TABLE IF NOT EXISTS "{self.name}" '
                               "(id bigint PRIMARY KEY, name text, v bigint)")
            async with conn.transaction():
                await conn.executemany(f'INSERT INTO "{self.name}" VALUES ($1, $2, $3)',
                                       [(r["id"], r["name"], r["v"]) for r in rows])
        finally:
            await conn.close()

    async def cleanup(self) -> None:
        from tests.postgres_cdc.conftest import Names  # the same slot and publication names

        await Names(self.name).cleanup(self.env["pg_dsn"])


class MysqlCdcOrigin(CdcOrigin, MysqlOrigin):
    def spec(self) -> dict[str, Any]:
        return {**MysqlOrigin.spec(self), "snapshot": True, "chunk_rows": 7,
                "max_batch_rows": 7}

    async def insert(self, rows: Sequence[Row]) -> None:
        await self._execute(f"CREATE TABLE IF NOT EXISTS `{self.name}` "
                            "(id bigint PRIMARY KEY, name varchar(40), v bigint)")
        values = ", ".join(f"({int(r['id'])}, '{r['name']}', {int(r['v'])})" for r in rows)
        await self._execute(f"INSERT INTO `{self.name}` VALUES {values}")


class MongoCdcOrigin(CdcOrigin, MongoOrigin):
    def spec(self) -> dict[str, Any]:
        return {**MongoOrigin.spec(self), "snapshot": True, "snapshot_chunk_size": 7,
                "batch_size": 7, "max_await_ms": 100}

    async def insert(self, rows: Sequence[Row]) -> None:
        await MongoOrigin.add(self, rows)


CDC_SOURCES: tuple[SourceFactory, ...] = (
    SourceFactory("postgres_cdc", "postgres_cdc", PostgresCdcOrigin, ("pg_dsn",)),
    SourceFactory("mysql_cdc", "mysql_cdc", MysqlCdcOrigin, ("mysql_params",)),
    SourceFactory("mongo_cdc", "mongo_cdc", MongoCdcOrigin, ("mongo_uri",)),
)
