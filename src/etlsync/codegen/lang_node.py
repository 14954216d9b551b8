"""Node.js: async functions over a node-postgres client/pool or a mysql2 promise connection,
JSDoc typedefs per result row (TypeScript reads them), the driver's own placeholders, and
per-query type handling (no global parser changes)."""

from __future__ import annotations

import json

from etlsync.codegen import naming
from etlsync.codegen.common import GenOptions, c_string, header, one_line, queries_of, rendered
from etlsync.codegen.dialect import placeholder_style
from etlsync.codegen.model import Query, QueryFile

TYPES: dict[str, str] = {
    "int16": "number", "int32": "number", "int64": "string", "float32": "number",
    "float64": "number", "decimal": "string", "text": "string", "bool": "boolean",
    "date": "string", "time": "string", "timestamp": "string", "timestamptz": "Date",
    "bytes": "Buffer", "json": "unknown", "uuid": "string", "unknown": "string",
}


def ts_type(logical: str, nullable: bool) -> str:
    return TYPES[logical] + (" | null" if nullable else "")


def generate(qf: QueryFile, texts: dict[str, str], opts: GenOptions) -> dict[str, str]:
    """``queries.js`` (CommonJS) and, with ``opts.main``, ``main.js``."""
    queries = queries_of(qf)
    funcs = naming.unique(None, [(q.name, q.name) for q in queries], naming.camel, "node",
                          "query names")
    files = {"queries.js": _module(queries, funcs, texts, opts, qf)}
    if opts.main:
        files["main.js"] = _runner(queries, funcs, opts, qf)
    return files


_PG_PRELUDE = """const pg = require('pg');

// dates and timestamps without time zone stay text (a JS Date would shift or truncate them)
const TEXT_OIDS = new Set([1082, 1083, 1114]);
const types = {
  getTypeParser(oid, format) {
    return TEXT_OIDS.has(oid) ? (v) => v : pg.types.getTypeParser(oid, format);
  },
};

async function run(db, text, values) {
  return (await db.query({ text, values, types })).rows;
}

async function exec(db, text, values) {
  return (await db.query({ text, values, types })).rowCount;
}
"""

_MYSQL_PRELUDE = """// BIGINT, dates and times stay text; TINYINT(1) is a boolean
function typeCast(field, next) {
  if (['LONGLONG', 'DATE', 'DATETIME', 'TIMESTAMP', 'TIME', 'NEWDECIMAL'].includes(field.type)) {
    return field.string();
  }
  if (field.type === 'TINY' && field.length === 1) {
    const v = field.string();
    return v === null ? null : v === '1';
  }
  return next();
}

async function run(db, sql, values) {
  const [rows] = await db.query({ sql, values, typeCast, rowsAsArray: false });
  return rows;
}

async function exec(db, sql, values) {
  const [res] = await db.query({ sql, values });
  return res.affectedRows;
}
"""


def _convert(logical: str, expr: str, dialect: str) -> str:
    if logical == "json" and dialect == "mysql":
        return f"(typeof {expr} === 'string' ? JSON.parse({expr}) : {expr})"
    if logical == "int64":
        return f"({expr} === null ? null : String({expr}))"
    if logical == "decimal" and dialect == "mysql":
        return f"({expr} === null ? null : String({expr}))"
    return expr


def _module(queries: list[Query], funcs: list[str], texts: dict[str, str], opts: GenOptions,
            qf: QueryFile) -> str:
    style = placeholder_style(opts.target)
    out = ["'use strict';", f"// {header(qf, opts)}", "",
           _PG_PRELUDE if opts.target == "postgres" else _MYSQL_PRELUDE]
    exports = []
    for q, func in zip(queries, funcs, strict=True):
        r = rendered(q, texts, style)
        const = func + "Sql"
        out.append(f"const {const} = {c_string(one_line(r.sql))};\n")
        pnames = naming.unique(q, [(p.name, p.name) for p in q.params], naming.camel, "node",
                               "parameters", reserved_ok=True)
        args_type = "{ " + ", ".join(f"{n}: {ts_type(p.type.logical, p.nullable)}"
                                     for n, p in zip(pnames, q.params, strict=True)) + " }"
        values = ", ".join(_value(pnames[i], q.params[i].type.logical, opts.target) for i in r.args)
        doc = ["/**", f" * Runs {q.name}.", " * @param {object} db a pg Client/Pool or a mysql2 "
               "promise Connection/Pool"]
        if q.params:
            doc.append(f" * @param {{{args_type}}} args")
        sig = f"async function {func}(db" + (", args" if q.params else "") + ")"
        if q.kind in ("exec", "execrows"):
            doc += [" * @returns {Promise<" + ("void" if q.kind == "exec" else "number") + ">}", " */"]
            body = f"  {'await' if q.kind == 'exec' else 'return'} exec(db, {const}, [{values}]);"
            out += ["\n".join(doc), sig + " {", body, "}\n"]
            exports.append(func)
            continue
        row = naming.pascal(q.name) + "Row"
        fields = naming.unique(q, [(c.name, c.name) for c in q.columns], naming.camel, "node",
                               "result columns", reserved_ok=True)
        props = "\n".join(f" * @property {{{ts_type(c.type.logical, c.nullable)}}} {f}"
                          + (f" SQL type {c.type.sql or '?'}, read as text"
                             if c.type.logical == "unknown" else "")
                          for f, c in zip(fields, q.columns, strict=True))
        out.append(f"/**\n * A row of {q.name}.\n * @typedef {{object}} {row}\n{props}\n */\n")
        mapping = ", ".join(f"{f}: {_convert(c.type.logical, f'r[{json.dumps(c.name)}]', opts.target)}"
                            for f, c in zip(fields, q.columns, strict=True))
        out.append(f"function to{row}(r) {{\n  return {{ {mapping} }};\n}}\n")
        if q.kind == "one":
            doc += [f" * @returns {{Promise<{row} | null>}}", " */"]
            out += ["\n".join(doc), sig + " {", f"  const rows = await run(db, {const}, [{values}]);",
                    f"  return rows.length ? to{row}(rows[0]) : null;", "}\n"]
        else:
            doc += [f" * @returns {{Promise<{row}[]>}}", " */"]
            out += ["\n".join(doc), sig + " {",
                    f"  return (await run(db, {const}, [{values}])).map(to{row});", "}\n"]
        exports.append(func)
    out.append("module.exports = { " + ", ".join(exports) + " };\n")
    return "\n".join(out)


def _value(name: str, logical: str, dialect: str) -> str:
    if logical == "int64" and dialect == "mysql":  # a string would be quoted (LIMIT '10')
        return f"args.{name} === null ? null : BigInt(args.{name})"
    if logical == "json":
        return f"args.{name} === null ? null : JSON.stringify(args.{name})"
    return f"args.{name}"


_PARSE = {"int16": "Number(s)", "int32": "Number(s)", "float32": "Number(s)",
          "float64": "Number(s)", "bool": "s === 'true'", "timestamptz": "new Date(s)",
          "bytes": "Buffer.from(s, 'base64')", "json": "JSON.parse(s)"}


def _runner(queries: list[Query], funcs: list[str], opts: GenOptions, qf: QueryFile) -> str:
    entries = []
    for q, func in zip(queries, funcs, strict=True):
        pnames = naming.unique(q, [(p.name, p.name) for p in q.params], naming.camel, "node",
                               "parameters", reserved_ok=True)
        conv = ", ".join(f"{n}: arg(a[{i}], (s) => {_PARSE.get(p.type.logical, 's')})"
                         for i, (n, p) in enumerate(zip(pnames, q.params, strict=True)))
        call = f"q.{func}(db" + (f", {{ {conv} }}" if q.params else "") + ")"
        entries.append(f"  {json.dumps(q.name)}: [{len(q.params)}, (db, a) => {call}],")
    connect = ("const pg = require('pg');\n  const db = new pg.Client({ connectionString: "
               "process.env.DATABASE_URL });\n  await db.connect();") if opts.target == "postgres" else (
        "const mysql = require('mysql2/promise');\n  const db = await mysql.createConnection("
        "process.env.DATABASE_URL);")
    return f"""'use strict';
// {header(qf, opts)}
// The runner: each stdin line is a query name and its arguments, tab separated (\\N: NULL,
// bytes in base64); each result is printed as one JSON line. DATABASE_URL names the database.
const readline = require('readline');
const q = require('./queries');

const arg = (s, parse) => (s === '\\\\N' ? null : parse(s));
const calls = {{
{chr(10).join(entries)}
}};

function replacer(key, value) {{
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) {{
    return Buffer.from(value.data).toString('base64');
  }}
  return value;
}}

async function main() {{
  {connect}
  try {{
    const lines = readline.createInterface({{ input: process.stdin, crlfDelay: Infinity }});
    for await (const line of lines) {{
      const [name, ...a] = line.split('\\t');
      const entry = calls[name];
      if (!entry) throw new Error(`unknown query ${{name}}`);
      if (a.length !== entry[0]) throw new Error(`${{name}}: expected ${{entry[0]}} arguments`);
      const result = await entry[1](db, a);
      console.log(JSON.stringify(result === undefined ? null : result, replacer));
    }}
  }} finally {{
    await db.end();
  }}
}}

main().catch((err) => {{
  console.error(`error: ${{err.message}}`);
  process.exit(1);
}});
"""
