"""Build and run generated code, and run the same queries directly, for the codegen tests.

Values are compared after one normalization per logical type (every runner prints bytes in
base64, decimals as strings, dates and times in ISO form)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
import re
import subprocess
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.support.toolchains import GOCODE, JARS, NODE_DIR

SQL_DIR = Path(__file__).parent / "sql"
U1, U2, U3 = (uuid.UUID(f"00000000-0000-4000-8000-00000000000{i}") for i in (1, 2, 3))
T1 = dt.datetime(2024, 1, 2, 3, 4, 5, 123000)
T3 = dt.datetime(2024, 3, 4, 12, 0, 0, 500000)
AUTHORS = [
    (1, "Ada", "first", dt.date(1990, 5, 1), 4.5, True, 10, Decimal("1234.50"),
     {"tags": ["a", "b"], "n": 1}, b"\x00\x01\xff", U1, T1, T1, dt.time(7, 30)),
    (2, "Bob", None, dt.date(1985, 12, 31), None, True, 20, Decimal("99.99"), None, None, U2,
     dt.datetime(2024, 2, 3), None, None),
    (3, 'Cy "q"\ttab', "ünïcode", None, 3.25, False, None, None, [1, 2], b"abc", U3, T3, T3,
     dt.time(23, 59, 59, 250000)),
]
BOOKS = [(1, 1, "B1", Decimal("10.00"), dt.date(2020, 1, 1)), (2, 1, "B2", Decimal("15.50"), None),
         (3, 2, "B3", Decimal("7.25"), dt.date(2021, 6, 1))]
CALLS: list[tuple[str, list[Any]]] = [
    ("GetAuthor", [1]), ("GetAuthor", [3]), ("GetAuthor", [99]),
    ("ListAuthorsFiltered", [dt.date(1980, 1, 1), True, Decimal("50.00"), U2]),
    ("AuthorsWithBooks", []),
    ("TopAuthors", [Decimal("5"), 10]),
    ("AuthorsByNumbers", [20, 4.0]),
    ("AuthorsCreatedBetween", [dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 28)]),
    ("AuthorsAwakeBefore", [dt.time(23, 59, 59, 500000)]),
    ("AuthorsByAvatar", [b"\x00\x01\xff"]),
    ("CountBooks", [1]),
    ("CreateBook", [100, 2, "new 'book' 100%", Decimal("1.10"), None]),
    ("CountBooks", [2]),
    ("SetAuthorMeta", [{"k": "v", "x": [True, None]}, T1, None, 1]),
    ("GetAuthor", [1]),
]


def names(unique: str) -> dict[str, str]:
    return {t: f"{unique}_{t}" for t in ("authors", "books", "books_copy", "authors_copy")}


def fill(template: str, tables: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: tables[m[1]], template)


def sql_file(name: str, tables: dict[str, str]) -> str:
    return fill((SQL_DIR / name).read_text(), tables)


@functools.cache
def plain_schema() -> Path:
    """schema_postgres.sql with the tables' plain names (offline typing: golden files, errors)."""
    path = Path(tempfile.mkdtemp(prefix="etlsync-codegen-")) / "schema.sql"
    path.write_text(sql_file("schema_postgres.sql", {t: t for t in names("x")}))
    return path


# -- the database side --------------------------------------------------------------------------
async def create_pg(dsn: str, tables: dict[str, str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql_file("schema_postgres.sql", tables))
        await conn.executemany(
            f"INSERT INTO {tables['authors']} VALUES "
            "($1,$2,$3,$4,$5,$6,$7,$8,$9::jsonb,$10,$11,$12,$13,$14)",
            [(*r[:8], None if r[8] is None else json.dumps(r[8]), *r[9:12],
              None if r[12] is None else r[12].replace(tzinfo=dt.UTC), r[13]) for r in AUTHORS])
        await conn.executemany(f"INSERT INTO {tables['books']} VALUES ($1,$2,$3,$4,$5)", BOOKS)
    finally:
        await conn.close()


async def create_mysql(params: dict[str, Any], tables: dict[str, str]) -> None:
    import aiomysql

    conn = await aiomysql.connect(autocommit=True, **params)
    try:
        async with conn.cursor() as cur:
            for statement in sql_file("schema_mysql.sql", tables).split(";"):
                if statement.strip():
                    await cur.execute(statement)
            await cur.executemany(
                f"INSERT INTO {tables['authors']} VALUES ({', '.join(['%s'] * 14)})",
                [(*r[:8], None if r[8] is None else json.dumps(r[8]), r[9], str(r[10]), *r[11:])
                 for r in AUTHORS])
            await cur.executemany(f"INSERT INTO {tables['books']} VALUES (%s,%s,%s,%s,%s)", BOOKS)
    finally:
        conn.close()


async def drop(dialect: str, where: Any, tables: dict[str, str]) -> None:
    if dialect == "postgres":
        import asyncpg

        conn = await asyncpg.connect(where)
        try:
            for t in tables.values():
                await conn.execute(f"DROP TABLE IF EXISTS {t}")
        finally:
            await conn.close()
    else:
        import aiomysql

        conn = await aiomysql.connect(autocommit=True, **where)
        try:
            async with conn.cursor() as cur:
                for t in tables.values():
                    await cur.execute(f"DROP TABLE IF EXISTS {t}")
        finally:
            conn.close()


async def run_direct(dialect: str, where: Any, qf: Any, texts: dict[str, str],
                     calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """Every call run directly (asyncpg / aiomysql) in one transaction that is rolled back."""
    from etlsync.codegen.dialect import render

    by_name = {q.name: q for q in qf.queries}
    out: list[Any] = []
    if dialect == "postgres":
        import asyncpg

        conn = await asyncpg.connect(where)
        tx = conn.transaction()
        await tx.start()
        try:
            for name, args in calls:
                q = by_name[name]
                r = render(q, texts[name], "dollar")
                values = [json.dumps(a) if q.params[i].type.logical == "json" else a
                          for i, a in enumerate(args)]
                if q.kind in ("one", "many"):
                    rows = [dict(zip([c.name for c in q.columns], rec, strict=True))
                            for rec in await conn.fetch(r.sql, *values)]
                    out.append(rows if q.kind == "many" else (rows[0] if rows else None))
                else:
                    status = await conn.execute(r.sql, *values)
                    out.append(int(status.split()[-1]) if q.kind == "execrows" else None)
        finally:
            await tx.rollback()
            await conn.close()
        return out
    import aiomysql

    conn = await aiomysql.connect(autocommit=False, **where)
    try:
        async with conn.cursor() as cur:
            for name, args in calls:
                q = by_name[name]
                r = render(q, texts[name], "qmark")
                sql = r.sql.replace("%", "%%").replace("?", "%s")
                values = [_mysql_arg(args[i], q.params[i].type.logical) for i in r.args]
                await cur.execute(sql, values)
                if q.kind in ("one", "many"):
                    rows = [dict(zip([c.name for c in q.columns], rec, strict=True))
                            for rec in await cur.fetchall()]
                    out.append(rows if q.kind == "many" else (rows[0] if rows else None))
                else:
                    out.append(cur.rowcount if q.kind == "execrows" else None)
    finally:
        await conn.rollback()
        conn.close()
    return out


def _mysql_arg(v: Any, logical: str) -> Any:
    if logical == "json" and v is not None:
        return json.dumps(v)
    return str(v) if isinstance(v, uuid.UUID) else v


# -- normalization ----------------------------------------------------------------------------------
def _ts(v: Any, aware: bool) -> Any:
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v.replace(" ", "T").replace("Z", "+00:00"))
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


def normal(v: Any, logical: str) -> Any:
    if v is None:
        return None
    if logical.startswith("int"):
        return int(v)
    if logical.startswith("float"):
        return round(float(v), 6)
    if logical == "decimal":
        return Decimal(str(v)).normalize()
    if logical == "bool":
        return v in (True, 1, "1", "true", "t") if not isinstance(v, bool) else v
    if logical == "date":
        return str(v)[:10]
    if logical == "time":  # aiomysql and PyMySQL read TIME as a timedelta
        if isinstance(v, dt.timedelta):
            return (dt.datetime.min + v).time()
        return v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v))
    if logical in ("timestamp", "timestamptz"):
        return _ts(v, logical == "timestamptz")
    if logical == "bytes":
        return v if isinstance(v, str) else base64.b64encode(bytes(v)).decode()
    if logical == "json":
        return json.loads(v) if isinstance(v, str | bytes) else v
    if logical == "uuid":
        return str(v).lower()
    return str(v)


def normalize(qf: Any, calls: list[tuple[str, list[Any]]], results: list[Any]) -> list[Any]:
    by_name = {q.name: q for q in qf.queries}
    out = []
    for (name, _), res in zip(calls, results, strict=True):
        q = by_name[name]
        from etlsync.codegen.naming import camel

        names = {c.name: c.name for c in q.columns} | {camel(c.name): c.name for c in q.columns}
        types = {c.name: c.type.logical for c in q.columns}
        if q.kind == "execrows":
            out.append(int(res))
        elif q.kind == "exec" or res is None:
            out.append(None)
        else:
            rows = res if q.kind == "many" else [res]
            norm = [{names[k]: normal(v, types[names[k]]) for k, v in r.items()} for r in rows]
            out.append(norm if q.kind == "many" else norm[0])
    return out


def encode_args(qf: Any, calls: list[tuple[str, list[Any]]]) -> str:
    """Runner input; a ``timestamptz`` parameter gets a UTC offset, a ``timestamp`` none."""
    by_name = {q.name: q for q in qf.queries}

    def typed(v: Any, logical: str) -> Any:
        if isinstance(v, dt.datetime) and logical == "timestamptz":
            return v.replace(tzinfo=dt.UTC)
        return v

    def enc(v: Any) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, bytes):
            return base64.b64encode(v).decode()
        if isinstance(v, dict | list):
            return json.dumps(v)
        if isinstance(v, dt.datetime | dt.date):
            return v.isoformat()
        return str(v)

    return "".join("\t".join([name, *(enc(typed(a, by_name[name].params[i].type.logical))
                                        for i, a in enumerate(args))]) + "\n"
                   for name, args in calls)


# -- building and running generated code ---------------------------------------------------------------
def _check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    return proc.stdout


def go_env(work: Path) -> dict[str, str]:
    return {**os.environ, "GO111MODULE": "off", "GOPATH": f"{work}/gopath:{GOCODE}",
            "GOPROXY": "off", "GOFLAGS": "", "GOCACHE": str(Path("/tmp/etlsync-codegen-gocache")),
            "CGO_ENABLED": "0"}


def build(lang: str, src: Path, work: Path) -> list[str]:
    """Compile the generated code in ``src``; returns the command that runs its runner."""
    if lang == "go":
        exe = work / "runner"
        _check(subprocess.run(["go", "build", "-o", str(exe), "."], cwd=src, env=go_env(work),
                              capture_output=True, text=True, timeout=300, check=False), "go build")
        return [str(exe)]
    if lang == "java":
        classes = work / "classes"
        cp = ":".join(str(j) for j in JARS)
        sources = [str(p) for p in src.rglob("*.java")]
        _check(subprocess.run(["javac", "-Xlint:all", "-Werror", "-cp", cp, "-d", str(classes),
                               *sources], capture_output=True, text=True, timeout=300, check=False),
               "javac")
        main = next(src.rglob("Main.java")).relative_to(src).with_suffix("")
        return ["java", "-cp", f"{classes}:{cp}", str(main).replace("/", ".")]
    if lang in ("node", "knex"):
        for f in src.glob("*.js"):
            _check(subprocess.run(["node", "--check", str(f)], capture_output=True, text=True,
                                  timeout=60, check=False), f"node --check {f.name}")
        return ["node", str(src / "main.js")]
    _check(subprocess.run(["python3", "-m", "py_compile", *map(str, src.glob("*.py"))],
                          capture_output=True, text=True, timeout=60, check=False), "py_compile")
    return ["python3", str(src / "main.py")]


def run_runner(lang: str, cmd: list[str], src: Path, url: str, stdin: str) -> list[Any]:
    env = {**os.environ, "DATABASE_URL": url}
    if lang in ("node", "knex"):
        env["NODE_PATH"] = str(NODE_DIR / "node_modules")
    if lang == "python":
        env["PYTHONPATH"] = str(src)
    out = _check(subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True,
                                timeout=120, check=False), f"{lang} runner")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def build_program(lang: str, src: Path, work: Path, name: str) -> tuple[list[str], dict[str, str]]:
    """Compile the transfer program ``name`` (``CopyBooks``) generated into ``src`` (Java in
    package ``gen``); returns the command that runs it and its environment. ``knex`` is Node.js."""
    from etlsync.codegen.naming import snake

    env = dict(os.environ)
    if lang == "go":
        exe = work / snake(name)
        _check(subprocess.run(["go", "build", "-o", str(exe), "."], cwd=src / snake(name),
                              env=go_env(work), capture_output=True, text=True, timeout=300,
                              check=False), "go build")
        return [str(exe)], env
    if lang == "java":
        classes = work / "classes"
        cp = ":".join(str(j) for j in JARS)
        _check(subprocess.run(["javac", "-Xlint:all", "-Werror", "-cp", cp, "-d", str(classes),
                               str(src / "gen" / f"{name}.java")], capture_output=True, text=True,
                              timeout=300, check=False), "javac")
        return ["java", "-cp", f"{classes}:{cp}", f"gen.{name}"], env
    if lang in ("node", "knex"):
        script = src / f"{snake(name)}.js"
        _check(subprocess.run(["node", "--check", str(script)], capture_output=True, text=True,
                              timeout=60, check=False), f"node --check {script.name}")
        return ["node", str(script)], env | {"NODE_PATH": str(NODE_DIR / "node_modules")}
    return ["python3", str(src / f"{snake(name)}.py")], env
