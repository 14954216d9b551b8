"""Python: functions over a SQLAlchemy ``Connection`` (``exec_driver_sql`` with the DB-API's
``%(name)s`` placeholders: psycopg 3 or PyMySQL underneath), a frozen dataclass per result row,
and a transfer program per ``:transfer``."""

from __future__ import annotations

import json

from etlsync.codegen import naming
from etlsync.codegen.common import GenOptions, header, queries_of, rendered, transfers_of
from etlsync.codegen.dialect import escape_text
from etlsync.codegen.model import Query, QueryFile
from etlsync.codegen.transfer import TransferSql, transfer_sql

TYPES: dict[str, str] = {
    "int16": "int", "int32": "int", "int64": "int", "float32": "float", "float64": "float",
    "decimal": "decimal.Decimal", "text": "str", "bool": "bool", "date": "datetime.date",
    "time": "datetime.time", "timestamp": "datetime.datetime", "timestamptz": "datetime.datetime",
    "bytes": "bytes", "json": "Any", "uuid": "uuid.UUID", "unknown": "str",
}


def py_type(logical: str, nullable: bool) -> str:
    return TYPES[logical] + (" | None" if nullable and logical != "json" else "")


def generate(qf: QueryFile, texts: dict[str, str], opts: GenOptions) -> dict[str, str]:
    """``queries.py``, with ``opts.main`` also ``main.py``, and ``<transfer>.py`` per transfer."""
    queries = queries_of(qf)
    funcs = naming.unique(None, [(q.name, q.name) for q in queries], naming.snake, "python",
                          "query names")
    files: dict[str, str] = {}
    if queries:
        files["queries.py"] = _module(queries, funcs, texts, opts, qf)
        if opts.main:
            files["main.py"] = _runner(queries, funcs, opts, qf)
    for q in transfers_of(qf):
        ts = transfer_sql(q, texts[q.name], opts.target, opts.sink)
        files[f"{naming.snake(q.name)}.py"] = _transfer(q, ts, opts, qf)
    return files


def _convert(logical: str, expr: str, dialect: str) -> str:
    """Driver value -> declared type (PyMySQL returns JSON and UUID as text, bools as ints,
    TIME as a timedelta)."""
    if dialect == "mysql" and logical == "json":
        return f"_json({expr})"
    if dialect == "mysql" and logical == "uuid":
        return f"_uuid({expr})"
    if dialect == "mysql" and logical == "bool":
        return f"_bool({expr})"
    if dialect == "mysql" and logical == "time":
        return f"_time({expr})"
    if logical == "bytes":
        return f"_bytes({expr})"
    if logical == "unknown":  # declared str: the driver may have parsed it (interval, array)
        return f"_str({expr})"
    return expr


def _param(logical: str, expr: str, dialect: str) -> str:
    if logical == "json":
        return f"_dump({expr})"
    if logical == "uuid" and dialect == "mysql":
        return f"_str({expr})"
    return expr


_HELPERS = '''

def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


def _dump(v: Any) -> str | None:
    return None if v is None else json.dumps(v)


def _uuid(v: Any) -> uuid.UUID | None:
    return v if v is None or isinstance(v, uuid.UUID) else uuid.UUID(str(v))


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _bytes(v: Any) -> bytes | None:
    return None if v is None else bytes(v)


def _time(v: Any) -> datetime.time | None:
    if v is None or isinstance(v, datetime.time):
        return v
    if not datetime.timedelta(0) <= v < datetime.timedelta(days=1):
        raise ValueError(f"TIME value {v} is not a time of day")
    return (datetime.datetime.min + v).time()
'''


def _module(queries: list[Query], funcs: list[str], texts: dict[str, str], opts: GenOptions,
            qf: QueryFile) -> str:
    out = [f'"""{header(qf, opts)}"""', "", "from __future__ import annotations", "",
           "import dataclasses", "import datetime", "import decimal", "import json", "import uuid",
           "from typing import Any", "", "from sqlalchemy import Connection", _HELPERS]
    for q, func in zip(queries, funcs, strict=True):
        r = rendered(q, texts, "pyformat")
        const = func.upper() + "_SQL"
        out.append(f"\n{const} = {_triple(r.sql)}\n")
        pnames = naming.unique(q, [(p.name, p.name) for p in q.params], naming.snake, "python",
                               "parameters")
        if pnames != [p.name for p in q.params]:
            for p, n in zip(q.params, pnames, strict=True):
                p.name = n
            r = rendered(q, texts, "pyformat")
            out[-1] = f"\n{const} = {_triple(r.sql)}\n"
        params = "".join(f", {p.name}: {py_type(p.type.logical, p.nullable)}" for p in q.params)
        star = ", *" if q.params else ""
        args = "{" + ", ".join(f"{json.dumps(p.name)}: {_param(p.type.logical, p.name, opts.target)}"
                               for p in q.params) + "}"
        sig = f"def {func}(conn: Connection{star}{params})"
        if q.kind in ("exec", "execrows"):
            ret = "None" if q.kind == "exec" else "int"
            body = f"    conn.exec_driver_sql({const}, {args})" if q.kind == "exec" else \
                f"    return int(conn.exec_driver_sql({const}, {args}).rowcount)"
            out += [f"\n{sig} -> {ret}:", f'    """Run {q.name}."""', body, ""]
            continue
        row = naming.pascal(q.name) + "Row"
        fields = naming.unique(q, [(c.name, c.name) for c in q.columns], naming.snake, "python",
                               "result columns")
        lines = ["\n@dataclasses.dataclass(frozen=True, slots=True)", f"class {row}:",
                 f'    """A row of {q.name}."""', ""]
        for f, c in zip(fields, q.columns, strict=True):
            comment = f"  # SQL type {c.type.sql or '?'}: read as text" \
                if c.type.logical == "unknown" else ""
            lines.append(f"    {f}: {py_type(c.type.logical, c.nullable)}{comment}")
        out += lines
        conv = ", ".join(_convert(c.type.logical, f"r[{i}]", opts.target) for i, c in enumerate(q.columns))
        out += ["", "    @classmethod", f"    def from_row(cls, r: Any) -> {row}:",
                f"        return cls({conv})", ""]
        if q.kind == "one":
            out += [f"\n{sig} -> {row} | None:", f'    """Run {q.name}; ``None`` when no row matches."""',
                    f"    r = conn.exec_driver_sql({const}, {args}).first()",
                    f"    return None if r is None else {row}.from_row(r)", ""]
        else:
            out += [f"\n{sig} -> list[{row}]:", f'    """Run {q.name}."""',
                    f"    return [{row}.from_row(r) for r in conn.exec_driver_sql({const}, {args})]", ""]
            if opts.dataframes:
                out += _dataframe_func(q, func, fields, params, star)
    if opts.dataframes:
        at = out.index("from sqlalchemy import Connection")
        out[at] = "import pandas\nfrom sqlalchemy import Connection"
    return "\n".join(out).rstrip() + "\n"


# pandas' nullable dtypes where one fits (an int column with NULLs stays an int column);
# timestamps in microseconds (NaT for NULL), aware ones in UTC; the rest stays Python objects
_DTYPES = {"int16": "Int16", "int32": "Int32", "int64": "Int64", "float32": "Float32",
           "float64": "Float64", "bool": "boolean", "text": "string", "unknown": "string",
           "timestamp": "datetime64[us]", "timestamptz": "datetime64[us, UTC]"}


def _dataframe_func(q: Query, func: str, fields: list[str], params: str, star: str) -> list[str]:
    """``<func>_df``: the rows of ``func`` as a DataFrame, a column per result column."""
    dtypes = "{" + ", ".join(f"{json.dumps(c.name)}: {json.dumps(_DTYPES.get(c.type.logical, 'object'))}"
                             for c in q.columns) + "}"
    const = f"_{func.upper()}_DTYPES"
    values = ", ".join(f"r.{f}" for f in fields) + ("," if len(fields) == 1 else "")
    kwargs = ", ".join(f"{p.name}={p.name}" for p in q.params)
    return [f"\n{const}: dict[str, str] = {dtypes}\n",
            f"\ndef {func}_df(conn: Connection{star}{params}) -> pandas.DataFrame:",
            f'    """Run {q.name} into a DataFrame (nullable dtypes for numbers, bools and text)."""',
            f"    rows = [({values}) for r in {func}(conn{', ' + kwargs if kwargs else ''})]",
            f"    return pandas.DataFrame.from_records(rows, columns=list({const})).astype({const})", ""]


def _triple(sql: str) -> str:
    """A Python literal of ``sql``: triple-quoted when it spans lines and can be."""
    if "\n" in sql and '"""' not in sql and "\\" not in sql and not sql.endswith('"'):
        return f'"""\n{sql}\n"""'
    return repr(sql)


_PARSE = {"int16": "int", "int32": "int", "int64": "int", "float32": "float", "float64": "float",
          "decimal": "decimal.Decimal", "bool": "_parse_bool", "date": "datetime.date.fromisoformat",
          "time": "datetime.time.fromisoformat", "timestamp": "datetime.datetime.fromisoformat",
          "timestamptz": "datetime.datetime.fromisoformat", "bytes": "base64.b64decode",
          "json": "json.loads", "uuid": "uuid.UUID"}

_RUNNER_TAIL = '''

def _parse_bool(s: str) -> bool:
    return s.lower() in ("true", "t", "1")


def _arg(s: str, parse: Any) -> Any:
    return None if s == "\\\\N" else parse(s)


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, decimal.Decimal | uuid.UUID | datetime.date | datetime.time):
        return v.isoformat() if hasattr(v, "isoformat") else str(v)
    return v


def engine_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    driver = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
              "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}[scheme]
    return f"{driver}://{rest}"


def main() -> int:
    engine = sqlalchemy.create_engine(engine_url(os.environ["DATABASE_URL"]))
    with engine.connect() as conn:
        for line in sys.stdin:
            name, *a = line.rstrip("\\n").split("\\t")
            count, call = CALLS[name]
            if len(a) != count:
                raise SystemExit(f"error: {name}: expected {count} arguments, got {len(a)}")
            print(json.dumps(_plain(call(conn, a))), flush=True)
            conn.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _runner(queries: list[Query], funcs: list[str], opts: GenOptions, qf: QueryFile) -> str:
    entries = []
    for q, func in zip(queries, funcs, strict=True):
        kw = ", ".join(f"{p.name}=_arg(a[{i}], {_PARSE.get(p.type.logical, 'str')})"
                       for i, p in enumerate(q.params))
        entries.append(f"    {json.dumps(q.name)}: ({len(q.params)}, lambda conn, a: "
                       f"queries.{func}(conn{', ' + kw if kw else ''})),")
    return (f'"""{header(qf, opts)}\n\nThe runner: each stdin line is a query name and its '
            'arguments, tab separated (\\\\N: NULL,\nbytes in base64); each result is printed as '
            'one JSON line. DATABASE_URL names the database.\n"""\n\n'
            "from __future__ import annotations\n\nimport base64\nimport dataclasses\n"
            "import datetime\nimport decimal\nimport json\nimport os\nimport sys\nimport uuid\n"
            "from typing import Any\n\nimport sqlalchemy\n\nimport queries\n\n"
            "CALLS: dict[str, tuple[int, Any]] = {\n" + "\n".join(entries) + "\n}" + _RUNNER_TAIL)


def _transfer(q: Query, ts: TransferSql, opts: GenOptions, qf: QueryFile) -> str:
    convs = ", ".join(_param(c.type.logical, _convert(c.type.logical, f"r[{i}]", opts.target), opts.sink)
                      for i, c in enumerate(ts.columns))
    keys = ", ".join(f"str(r[{p}])" for p in ts.key_positions)
    first = escape_text(ts.first, "pyformat")
    nxt = ts.next_in("pyformat")
    return f'''"""{header(qf, opts)}

Transfer {q.name}: copies ({ts.spec.write_mode}) into {ts.spec.table} in batches of {ts.spec.batch_size} rows,
one transaction per batch, from SOURCE_URL to TARGET_URL. Prints
{{"position": [...], "rows": N, "batches": N}} on exit; resume with --after KEY (once per key column).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import uuid
from typing import Any

import sqlalchemy

FIRST_SQL = {_triple(first)}
NEXT_SQL = {_triple(nxt)}
INSERT_HEAD = {_triple(escape_text(ts.insert_head, "pyformat"))}
INSERT_TAIL = {_triple(escape_text(ts.insert_tail, "pyformat"))}
WIDTH = {len(ts.columns)}
{_HELPERS}

def engine_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    driver = {{"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
              "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}}[scheme]
    return f"{{driver}}://{{rest}}"


def copy(after: list[str], max_batches: int, report: dict[str, Any]) -> None:
    src = sqlalchemy.create_engine(engine_url(os.environ["SOURCE_URL"]))
    dst = sqlalchemy.create_engine(engine_url(os.environ["TARGET_URL"]))
    with src.connect() as s, dst.connect() as d:
        while max_batches == 0 or report["batches"] < max_batches:
            if after:
                rows = s.exec_driver_sql(NEXT_SQL, {{f"k{{i}}": v for i, v in enumerate(after)}}).all()
            else:
                rows = s.exec_driver_sql(FIRST_SQL).all()
            s.rollback()
            if not rows:
                return
            params: dict[str, Any] = {{}}
            marks = []
            for n, r in enumerate(rows):
                for j, v in enumerate(({convs},)):
                    params[f"v{{n}}_{{j}}"] = v
                marks.append("(" + ", ".join(f"%(v{{n}}_{{j}})s" for j in range(WIDTH)) + ")")
            with d.begin():
                d.exec_driver_sql(INSERT_HEAD + ", ".join(marks) + INSERT_TAIL, params)
            r = rows[-1]
            after = [{keys}]
            report.update(position=after, rows=report["rows"] + len(rows),
                          batches=report["batches"] + 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--after", action="append", default=[], help="resume after this key value")
    ap.add_argument("--max-batches", type=int, default=0, help="stop after this many batches")
    a = ap.parse_args()
    report: dict[str, Any] = {{"position": a.after, "rows": 0, "batches": 0}}
    try:
        copy(a.after, a.max_batches, report)
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's error, not the batch's values
        report["error"] = f"{{type(cause).__name__}}: {{cause}}"
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
