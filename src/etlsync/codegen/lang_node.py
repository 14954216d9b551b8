"""Node.js: async functions over a node-postgres client/pool or a mysql2 promise connection
(``node_driver="plain"``, the default) or over a Knex instance or transaction (``"knex"``:
``knex.raw`` with ``?`` bindings), JSDoc typedefs per result row (TypeScript reads them), the
driver's own placeholders, per-query type handling (no global parser changes), and a transfer
program per ``:transfer``."""

from __future__ import annotations

import json

from etlsync.codegen import naming
from etlsync.codegen.common import (
    GenOptions,
    c_string,
    header,
    one_line,
    queries_of,
    rendered,
    transfers_of,
)
from etlsync.codegen.dialect import escape_text, placeholder_style
from etlsync.codegen.model import CodegenError, Query, QueryFile
from etlsync.codegen.transfer import TransferSql, transfer_sql

TYPES: dict[str, str] = {
    "int16": "number", "int32": "number", "int64": "string", "float32": "number",
    "float64": "number", "decimal": "string", "text": "string", "bool": "boolean",
    "date": "string", "time": "string", "timestamp": "string", "timestamptz": "Date",
    "bytes": "Buffer", "json": "unknown", "uuid": "string", "unknown": "string",
}


def ts_type(logical: str, nullable: bool) -> str:
    return TYPES[logical] + (" | null" if nullable else "")


def generate(qf: QueryFile, texts: dict[str, str], opts: GenOptions) -> dict[str, str]:
    """``queries.js`` (CommonJS), with ``opts.main`` ``main.js``, and ``<transfer>.js`` per
    transfer."""
    queries = queries_of(qf)
    funcs = naming.unique(None, [(q.name, q.name) for q in queries], naming.camel, "node",
                          "query names")
    if opts.node_driver not in NODE_DRIVERS:
        raise CodegenError(f"--node-driver {opts.node_driver!r}: expected one of {', '.join(NODE_DRIVERS)}")
    files: dict[str, str] = {}
    if queries:
        files["queries.js"] = _module(queries, funcs, texts, opts, qf)
    if queries and opts.main:
        files["main.js"] = _runner(queries, funcs, opts, qf)
    for q in transfers_of(qf):
        ts = transfer_sql(q, texts[q.name], opts.target, opts.sink)
        files[f"{naming.snake(q.name)}.js"] = _transfer(q, ts, opts, qf)
    return files


_PG_TYPES = """const pg = require('pg');

// pg parses the types this code maps (bool, bytea, numbers, JSON, uuid, timestamptz); dates and
// timestamps without time zone stay text (a JS Date would shift or truncate them), and so does
// every type it does not map (intervals, arrays, ranges: read as text)
const PARSED_OIDS = new Set([16, 17, 20, 21, 23, 114, 700, 701, 1184, 1700, 2950, 3802]);
const types = {
  getTypeParser(oid, format) {
    return PARSED_OIDS.has(oid) ? pg.types.getTypeParser(oid, format) : (v) => v;
  },
};
"""

_MYSQL_TYPES = """// BIGINT, DECIMAL, dates, times and JSON (MariaDB marks its JSON columns) stay text;
// TINYINT(1) is a boolean
function typeCast(field, next) {
  if (['LONGLONG', 'DATE', 'DATETIME', 'TIMESTAMP', 'TIME', 'NEWDECIMAL'].includes(field.type)) {
    return field.string();
  }
  if (field.type === 'JSON' || field.extendedFormat === 'json') {
    return field.string('utf8');
  }
  if (field.type === 'TINY' && field.length === 1) {
    const v = field.string();
    return v === null ? null : v === '1';
  }
  return next();
}
"""

_RUN = {
    ("postgres", "plain"): """
async function run(db, text, values) {
  return (await db.query({ text, values, types })).rows;
}

async function exec(db, text, values) {
  return (await db.query({ text, values, types })).rowCount;
}
""",
    ("mysql", "plain"): """
async function run(db, sql, values) {
  const [rows] = await db.query({ sql, values, typeCast, rowsAsArray: false });
  return rows;
}

async function exec(db, sql, values) {
  const [res] = await db.query({ sql, values });
  return res.affectedRows;
}
""",
    ("postgres", "knex"): """
async function run(db, sql, values) {
  return (await db.raw(sql, values).options({ types })).rows;
}

async function exec(db, sql, values) {
  return (await db.raw(sql, values).options({ types })).rowCount;
}
""",
    ("mysql", "knex"): """
async function run(db, sql, values) {
  const [rows] = await db.raw(sql, values).options({ typeCast });
  return rows;
}

async function exec(db, sql, values) {
  const [res] = await db.raw(sql, values);
  return res.affectedRows;
}
""",
}
_DB_DOC = {"plain": "a pg Client/Pool or a mysql2 promise Connection/Pool",
           "knex": "a Knex instance or transaction (pg or mysql2 client)"}
NODE_DRIVERS = ("plain", "knex")


def _types(dialect: str) -> str:
    return _PG_TYPES if dialect == "postgres" else _MYSQL_TYPES


def _style(opts: GenOptions) -> str:
    return "knex" if opts.node_driver == "knex" else placeholder_style(opts.target)


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
    style = _style(opts)
    out = ["'use strict';", f"// {header(qf, opts)}", "",
           _types(opts.target) + _RUN[(opts.target, opts.node_driver)]]
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
        doc = ["/**", f" * Runs {q.name}.", f" * @param {{object}} db {_DB_DOC[opts.node_driver]}"]
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
    if opts.node_driver == "knex":
        client = "pg" if opts.target == "postgres" else "mysql2"
        connect = (f"const db = require('knex')({{\n    client: '{client}',\n    connection: "
                   "process.env.DATABASE_URL,\n    compileSqlOnError: false, // no values in errors\n  });")
    elif opts.target == "postgres":
        connect = ("const pg = require('pg');\n  const db = new pg.Client({ connectionString: "
                   "process.env.DATABASE_URL });\n  await db.connect();")
    else:
        connect = ("const mysql = require('mysql2/promise');\n  const db = await "
                   "mysql.createConnection(process.env.DATABASE_URL);")
    close = "db.destroy()" if opts.node_driver == "knex" else "db.end()"
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
    await {close};
  }}
}}

main().catch((err) => {{
  console.error(`error: ${{err.message}}`);
  process.exit(1);
}});
"""


# -- transfers ---------------------------------------------------------------------------------
_TRANSFER_PG_TYPES = """const pg = require('pg');

// pg parses bool, bytea, numbers and uuid; the rest stays text the sink reads back: dates,
// times, timestamps (the session is in UTC), JSON, and types not mapped
const PARSED_OIDS = new Set([16, 17, 20, 21, 23, 700, 701, 1700, 2950]);
const types = {
  getTypeParser(oid, format) {
    return PARSED_OIDS.has(oid) ? pg.types.getTypeParser(oid, format) : (v) => v;
  },
};
"""

_OPEN = {
    ("postgres", "plain"): """
async function openPostgres(url) {
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  await client.connect();
  return {
    rows: async (text, values) => (await client.query({ text, values, types })).rows,
    write: async (text, values) => {
      await client.query('BEGIN');
      try {
        await client.query({ text, values });
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    },
    end: () => client.end(),
  };
}
""",
    ("mysql", "plain"): """
async function openMysql(url) {
  const conn = await require('mysql2/promise').createConnection(url);
  return {
    rows: async (sql, values) => (await conn.query({ sql, values, typeCast }))[0],
    write: async (sql, values) => {
      await conn.beginTransaction();
      try {
        await conn.query({ sql, values });
        await conn.commit();
      } catch (err) {
        await conn.rollback().catch(() => {});
        throw err;
      }
    },
    end: () => conn.end(),
  };
}
""",
    ("postgres", "knex"): """
async function openPostgres(url) {
  return openKnex('pg', { connectionString: url, options: '-c TimeZone=UTC' }, { types });
}
""",
    ("mysql", "knex"): """
async function openMysql(url) {
  return openKnex('mysql2', url, { typeCast });
}
""",
}

_OPEN_KNEX = """
function openKnex(client, connection, options) {
  // compileSqlOnError: false keeps the batch's values out of error messages
  const db = require('knex')({ client, connection, pool: { min: 0, max: 1 }, compileSqlOnError: false });
  const rowsOf = (res) => (client === 'pg' ? res.rows : res[0]);
  return {
    rows: async (sql, values) => rowsOf(await db.raw(sql, values).options(options)),
    write: (sql, values) =>
      db.transaction(async (trx) => {
        await trx.raw(sql, values);
      }),
    end: () => db.destroy(),
  };
}
"""


def _transfer_value(logical: str, expr: str, source: str, sink: str) -> str:
    if logical == "timestamptz" and source == "postgres" and sink == "mysql":
        return f"utcText({expr})"  # MariaDB DATETIME takes the UTC time without its offset
    return expr


def _transfer(q: Query, ts: TransferSql, opts: GenOptions, qf: QueryFile) -> str:
    source, sink, driver = opts.target, opts.sink, opts.node_driver
    knex = driver == "knex"
    read_style = "knex" if knex else placeholder_style(source)
    write_style = "knex" if knex else placeholder_style(sink)
    texts = {"FIRST_SQL": escape_text(ts.first, read_style), "NEXT_SQL": ts.next_in(read_style),
             "INSERT_HEAD": escape_text(ts.insert_head, write_style),
             "INSERT_TAIL": escape_text(ts.insert_tail, write_style)}
    consts = "\n".join(f"const {k} = {c_string(v)};" for k, v in texts.items())
    dialects = sorted({source, sink}, reverse=True)  # postgres first
    preludes = "".join({"postgres": _TRANSFER_PG_TYPES, "mysql": _MYSQL_TYPES}[d] for d in dialects)
    opens = (_OPEN_KNEX if knex else "") + "".join(_OPEN[(d, driver)] for d in dialects)
    opener = {"postgres": "openPostgres", "mysql": "openMysql"}
    values = ", ".join(_transfer_value(c.type.logical, f"r[{json.dumps(c.name)}]", source, sink)
                       for c in ts.columns)
    keys = ", ".join(f"String(r[{json.dumps(ts.columns[p].name)}])" for p in ts.key_positions)
    mark = "`$${values.length}`" if write_style == "dollar" else "'?'"
    utc = ("\nfunction utcText(v) {\n  return v === null ? null : v.replace(/\\+00$/, '');\n}\n"
           if "utcText(" in values else "")
    spec = ts.spec
    return f"""'use strict';
// {header(qf, opts)}
// Transfer {q.name}: copies ({spec.write_mode}) into {spec.table} in batches of {spec.batch_size} rows, one
// transaction per batch, from SOURCE_URL to TARGET_URL. Prints {{"position": [...], "rows": N,
// "batches": N}} on exit; resume with --after KEY (once per key column), stop early with
// --max-batches N.

{consts}
const KEYS = {ts.key_count()};

{preludes}{opens}{utc}
function toValues(r) {{
  return [{values}];
}}

function keyOf(r) {{
  return [{keys}];
}}

function parseArgs(argv) {{
  const args = {{ after: [], maxBatches: 0 }};
  for (let i = 0; i < argv.length; i++) {{
    if (argv[i] === '--after' && i + 1 < argv.length) {{
      args.after.push(argv[++i]);
    }} else if (argv[i] === '--max-batches' && /^[0-9]+$/.test(argv[i + 1] || '')) {{
      args.maxBatches = Number(argv[++i]);
    }} else {{
      console.error(`usage: [--after KEY]... [--max-batches N] (bad: ${{argv[i]}})`);
      process.exit(2);
    }}
  }}
  return args;
}}

async function copy(after, maxBatches, rep) {{
  if (after.length !== 0 && after.length !== KEYS) {{
    throw new Error(`--after: give ${{KEYS}} key value(s)`);
  }}
  const src = await {opener[source]}(process.env.SOURCE_URL);
  try {{
    const dst = await {opener[sink]}(process.env.TARGET_URL);
    try {{
      while (maxBatches === 0 || rep.batches < maxBatches) {{
        const rows = after.length ? await src.rows(NEXT_SQL, after) : await src.rows(FIRST_SQL, []);
        if (rows.length === 0) return;
        const values = [];
        const tuples = [];
        for (const r of rows) {{
          const marks = [];
          for (const v of toValues(r)) {{
            values.push(v);
            marks.push({mark});
          }}
          tuples.push(`(${{marks.join(', ')}})`);
        }}
        await dst.write(INSERT_HEAD + tuples.join(', ') + INSERT_TAIL, values);
        after = keyOf(rows[rows.length - 1]);
        rep.position = after;
        rep.rows += rows.length;
        rep.batches += 1;
      }}
    }} finally {{
      await dst.end();
    }}
  }} finally {{
    await src.end();
  }}
}}

async function main() {{
  const {{ after, maxBatches }} = parseArgs(process.argv.slice(2));
  const rep = {{ position: after, rows: 0, batches: 0 }};
  let code = 0;
  try {{
    await copy(after, maxBatches, rep);
  }} catch (err) {{
    rep.error = `${{err.name}}: ${{err.message}}`;
    code = 1;
  }}
  console.log(JSON.stringify(rep));
  process.exitCode = code;
}}

main();
"""
