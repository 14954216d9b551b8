"""Go: database/sql functions over a ``DBTX`` (``*sql.DB``, ``*sql.Conn``, ``*sql.Tx``), a
struct per result row, pointers for nullable values; lib/pq or go-sql-driver/mysql."""

from __future__ import annotations

from etlsync.codegen import naming
from etlsync.codegen.common import GenOptions, go_string, header, one_line, queries_of, rendered, transfers_of
from etlsync.codegen.dialect import placeholder_style
from etlsync.codegen.model import Param, Query, QueryFile, ResultColumn
from etlsync.codegen.transfer import TransferSql, transfer_sql

TYPES: dict[str, str] = {
    "int16": "int16", "int32": "int32", "int64": "int64", "float32": "float32",
    "float64": "float64", "decimal": "string", "text": "string", "bool": "bool",
    "date": "time.Time", "time": "string", "timestamp": "time.Time", "timestamptz": "time.Time",
    "bytes": "[]byte", "json": "json.RawMessage", "uuid": "string", "unknown": "string",
}
_NILABLE = ("[]byte", "json.RawMessage")
DRIVERS = {"postgres": ("postgres", "github.com/lib/pq"),
           "mysql": ("mysql", "github.com/go-sql-driver/mysql")}


def go_type(logical: str, nullable: bool) -> str:
    base = TYPES[logical]
    return base if not nullable or base in _NILABLE else "*" + base


def _comment(typ_sql: str, logical: str) -> str:
    return f" // SQL type {typ_sql or '?'}: read as text" if logical == "unknown" else ""


def generate(qf: QueryFile, texts: dict[str, str], opts: GenOptions) -> dict[str, str]:
    """``queries.go`` (package ``opts.package`` or ``main`` with ``opts.main``), ``main.go``
    with the runner, and ``<transfer>/main.go`` per transfer."""
    queries = queries_of(qf)
    funcs = naming.unique(None, [(q.name, q.name) for q in queries], lambda n: naming.pascal(n, True),
                          "go", "query names")
    package = "main" if opts.main else (opts.package or "queries")
    files: dict[str, str] = {}
    if queries:
        files["queries.go"] = _queries_file(queries, funcs, texts, opts, package, qf)
        if opts.main:
            files["main.go"] = _runner(queries, funcs, opts, qf)
    for q in transfers_of(qf):
        ts = transfer_sql(q, texts[q.name], opts.target, opts.sink)
        files[f"{naming.snake(q.name)}/main.go"] = _transfer_program(q, ts, opts, qf)
    return files


def _fields(q: Query) -> list[str]:
    return naming.unique(q, [(c.name, c.name) for c in q.columns], lambda n: naming.pascal(n, True),
                         "go", "result columns", reserved_ok=True)


def _param_names(q: Query) -> list[str]:
    return naming.unique(q, [(p.name, p.name) for p in q.params], naming.camel, "go", "parameters")


def _queries_file(queries: list[Query], funcs: list[str], texts: dict[str, str], opts: GenOptions,
                  package: str, qf: QueryFile) -> str:
    style = placeholder_style(opts.target)
    body: list[str] = []
    used: set[str] = set()
    for q, func in zip(queries, funcs, strict=True):
        r = rendered(q, texts, style)
        const = func[0].lower() + func[1:] + "SQL"
        body.append(f"const {const} = {go_string(one_line(r.sql))}\n")
        pnames = _param_names(q)
        params = ", ".join(f"{n} {go_type(p.type.logical, p.nullable)}"
                           for n, p in zip(pnames, q.params, strict=True))
        used |= {go_type(p.type.logical, False) for p in q.params}
        args = ", ".join(_arg(pnames[i], q.params[i]) for i in r.args)
        call_args = f"ctx, {const}" + (f", {args}" if args else "")
        sig = f"func {func}(ctx context.Context, db DBTX" + (f", {params}" if params else "")
        if q.kind in ("exec", "execrows"):
            if q.kind == "exec":
                body.append(f"// {func} runs {q.name}.\n{sig}) error {{\n"
                            f"\t_, err := db.ExecContext({call_args})\n\treturn err\n}}\n")
            else:
                body.append(f"// {func} runs {q.name} and returns the number of rows it changed.\n"
                            f"{sig}) (int64, error) {{\n\tres, err := db.ExecContext({call_args})\n"
                            "\tif err != nil {\n\t\treturn 0, err\n\t}\n\treturn res.RowsAffected()\n}\n")
            continue
        row = func + "Row"
        fields = _fields(q)
        used |= {go_type(c.type.logical, False) for c in q.columns}
        lines = [f"// {row} is a row of {q.name}.", f"type {row} struct {{"]
        for f, c in zip(fields, q.columns, strict=True):
            lines.append(f"\t{f} {go_type(c.type.logical, c.nullable)} `json:\"{c.name}\"`"
                         + _comment(c.type.sql, c.type.logical))
        lines.append("}\n")
        body.append("\n".join(lines))
        body.append(_scan_func(func, row, fields, q.columns))
        if q.kind == "one":
            body.append(f"// {func} runs {q.name}; it returns nil when no row matches.\n"
                        f"{sig}) (*{row}, error) {{\n\trows, err := db.QueryContext({call_args})\n"
                        "\tif err != nil {\n\t\treturn nil, err\n\t}\n\tdefer rows.Close()\n"
                        "\tif !rows.Next() {\n\t\treturn nil, rows.Err()\n\t}\n"
                        f"\tr, err := scan{row}(rows)\n\tif err != nil {{\n\t\treturn nil, err\n\t}}\n"
                        "\treturn &r, rows.Err()\n}\n")
        else:
            body.append(f"// {func} runs {q.name}.\n{sig}) ([]{row}, error) {{\n"
                        f"\trows, err := db.QueryContext({call_args})\n"
                        "\tif err != nil {\n\t\treturn nil, err\n\t}\n\tdefer rows.Close()\n"
                        f"\titems := []{row}{{}}\n\tfor rows.Next() {{\n\t\tr, err := scan{row}(rows)\n"
                        "\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}\n\t\titems = append(items, r)\n"
                        "\t}\n\treturn items, rows.Err()\n}\n")
    times = any(c.type.logical == "time" for q in queries for c in q.columns)
    imports = ["context", "database/sql"]
    if "json.RawMessage" in used:
        imports.append("encoding/json")
    if times:
        imports.append("fmt")
    if "time.Time" in used or times:
        imports.append("time")
    head = f"// {header(qf, opts)}\n\npackage {package}\n\nimport (\n" + \
        "".join(f'\t"{i}"\n' for i in imports) + ")\n\n"
    dbtx = ("// DBTX is what the queries run on: *sql.DB, *sql.Conn or *sql.Tx.\n"
            "type DBTX interface {\n"
            "\tExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)\n"
            "\tQueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)\n"
            "}\n\n")
    param_types = {p.type.logical for q in queries for p in q.params}
    helper = ("// jsonArg passes JSON as text (drivers would send []byte as binary).\n"
              "func jsonArg(v json.RawMessage) any {\n\tif v == nil {\n\t\treturn nil\n\t}\n"
              "\treturn string(v)\n}\n\n") if "json" in param_types else ""
    helper += _BYTES_ARG if "bytes" in param_types else ""
    return head + dbtx + helper + (_TIME_TEXT if times else "") + "\n".join(body)


_TIME_TEXT = """// timeText is a time of day as text (15:04:05.999999), whatever the driver scanned.
func timeText(v any) string {
	switch t := v.(type) {
	case time.Time:
		return t.Format("15:04:05.999999")
	case []byte:
		return string(t)
	}
	return fmt.Sprint(v)
}

"""


_BYTES_ARG = """// bytesArg passes a nil []byte as NULL (lib/pq would send an empty bytea).
func bytesArg(v []byte) any {
	if v == nil {
		return nil
	}
	return v
}

"""


def _arg(name: str, p: Param) -> str:
    return {"json": f"jsonArg({name})", "bytes": f"bytesArg({name})"}.get(p.type.logical, name)


def _scan_func(func: str, row: str, fields: list[str], columns: list[ResultColumn]) -> str:
    temps, targets, assigns = [], [], []
    for i, (f, c) in enumerate(zip(fields, columns, strict=True)):
        if c.type.logical == "json":
            temps.append(f"\tvar c{i} []byte")
            targets.append(f"&c{i}")
            assigns.append(f"\tif c{i} != nil {{\n\t\tr.{f} = json.RawMessage(c{i})\n\t}}")
        elif c.type.logical == "time":  # lib/pq scans a time into a time.Time, MySQL into text
            temps.append(f"\tvar c{i} any")
            targets.append(f"&c{i}")
            assigns.append(f"\tif c{i} != nil {{\n\t\tt := timeText(c{i})\n\t\tr.{f} = &t\n\t}}"
                           if c.nullable else f"\tr.{f} = timeText(c{i})")
        else:
            targets.append(f"&r.{f}")
    lines = [f"func scan{row}(rows *sql.Rows) ({row}, error) {{", f"\tvar r {row}", *temps,
             f"\terr := rows.Scan({', '.join(targets)})", *assigns, "\treturn r, err", "}\n"]
    return "\n".join(lines)


# -- the runner --------------------------------------------------------------------------------
_OPEN_DB = r'''
// openDB opens a postgres:// or mysql:// URL; its query (sslmode=..., tls=...) goes to the driver.
// The error never repeats the URL: it may hold a password.
func openDB(raw string) (*sql.DB, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad database URL")
	}
	if u.Scheme == "mysql" || u.Scheme == "mariadb" {
		pass, _ := u.User.Password()
		dsn := fmt.Sprintf("%s:%s@tcp(%s)%s?parseTime=true&loc=UTC",
			u.User.Username(), pass, u.Host, u.Path)
		if u.RawQuery != "" {
			dsn += "&" + u.RawQuery
		}
		return sql.Open("mysql", dsn)
	}
	return sql.Open("postgres", raw)
}
'''

_RUNNER_HELPERS = _OPEN_DB + r'''
func isNull(s string) bool { return s == `\N` }

func parseInt64(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
func parseInt32(s string) (int32, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	return int32(v), err
}
func parseInt16(s string) (int16, error) {
	v, err := strconv.ParseInt(s, 10, 16)
	return int16(v), err
}
func parseFloat64(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
func parseFloat32(s string) (float32, error) {
	v, err := strconv.ParseFloat(s, 32)
	return float32(v), err
}
func parseString(s string) (string, error) { return s, nil }
func parseBool(s string) (bool, error)     { return strconv.ParseBool(s) }
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a date or time: %q", s)
}
func parseBytes(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func parseJSON(s string) (json.RawMessage, error) {
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("not JSON: %q", s)
	}
	return json.RawMessage(s), nil
}

func main() {
	db, err := openDB(os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	defer db.Close()
	ctx := context.Background()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	for in.Scan() {
		fields := strings.Split(in.Text(), "\t")
		out, err := call(ctx, db, fields[0], fields[1:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", fields[0]+":", err)
			os.Exit(1)
		}
		text, err := json.Marshal(out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		fmt.Println(string(text))
	}
}
'''

_PARSERS = {"int16": "parseInt16", "int32": "parseInt32", "int64": "parseInt64",
            "float32": "parseFloat32", "float64": "parseFloat64", "bool": "parseBool",
            "date": "parseTime", "timestamp": "parseTime", "timestamptz": "parseTime",
            "bytes": "parseBytes", "json": "parseJSON"}


def _runner(queries: list[Query], funcs: list[str], opts: GenOptions, qf: QueryFile) -> str:
    cases = []
    for q, func in zip(queries, funcs, strict=True):
        lines = [f"\tcase {go_string(q.name)}:",
                 f"\t\tif len(a) != {len(q.params)} {{",
                 f'\t\t\treturn nil, fmt.Errorf("expected {len(q.params)} arguments, got %d", len(a))',
                 "\t\t}"]
        names = []
        for i, p in enumerate(q.params):
            parse = _PARSERS.get(p.type.logical, "parseString")
            var = f"p{i}"
            names.append(var)
            if p.nullable:
                lines += [f"\t\tvar {var} {go_type(p.type.logical, True)}",
                          f"\t\tif !isNull(a[{i}]) {{", f"\t\t\tv, err := {parse}(a[{i}])",
                          "\t\t\tif err != nil {\n\t\t\t\treturn nil, err\n\t\t\t}"]
                lines.append(f"\t\t\t{var} = v" if go_type(p.type.logical, True) in _NILABLE
                             else f"\t\t\t{var} = &v")
                lines.append("\t\t}")
            else:
                lines += [f"\t\t{var}, err := {parse}(a[{i}])",
                          "\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}"]
        args = "".join(", " + n for n in names)
        lines.append(f"\t\treturn {func}(ctx, db{args})" if q.kind != "exec" else
                     f"\t\treturn nil, {func}(ctx, db{args})")
        cases.append("\n".join(lines))
    driver = DRIVERS[opts.target][1]
    return (f"// {header(qf, opts)}\n\n// The runner: each line of stdin is a query name and its "
            "arguments, tab separated\n// (\\N: NULL, bytes in base64); each result is printed as "
            "one JSON line.\npackage main\n\nimport (\n\t\"bufio\"\n\t\"context\"\n"
            "\t\"database/sql\"\n\t\"encoding/base64\"\n\t\"encoding/json\"\n\t\"fmt\"\n"
            "\t\"net/url\"\n\t\"os\"\n\t\"strconv\"\n\t\"strings\"\n\t\"time\"\n\n"
            f"\t_ \"{driver}\"\n)\n" + _RUNNER_HELPERS +
            "\nfunc call(ctx context.Context, db DBTX, name string, a []string) (any, error) {\n"
            "\tswitch name {\n" + "\n".join(cases) +
            '\n\t}\n\treturn nil, fmt.Errorf("unknown query %q", name)\n}\n')


# -- transfers ---------------------------------------------------------------------------------
def _transfer_program(q: Query, ts: TransferSql, opts: GenOptions, qf: QueryFile) -> str:
    n = len(ts.columns)
    decls, ptrs, vals = [], [], []
    for i, c in enumerate(ts.columns):
        time_of_day = c.type.logical == "time"
        scan_type = "any" if time_of_day else "[]byte" if c.type.logical == "json" else \
            go_type(c.type.logical, True)  # database/sql scans NULL into []byte, not json.RawMessage
        decls.append(f"\t\t\tvar c{i} {scan_type}")
        ptrs.append(f"&c{i}")
        vals.append({"json": f"jsonText(c{i})", "bytes": f"bytesArg(c{i})",
                     "time": f"timeValue(c{i})"}.get(c.type.logical, f"c{i}"))
    times = _TIME_TEXT + ("// timeValue is a scanned time of day as text, NULL as nil.\n"
                          "func timeValue(v any) any {\n\tif v == nil {\n\t\treturn nil\n\t}\n"
                          "\treturn timeText(v)\n}\n\n") if "timeValue(" in "".join(vals) else ""
    times += _BYTES_ARG if "bytesArg(" in "".join(vals) else ""
    keys = ", ".join(f"keyText(c{p})" for p in ts.key_positions)
    placeholder = ('fmt.Sprintf("$%d", len(args)+j+1)' if opts.sink == "postgres" else '"?"')
    drivers = sorted({DRIVERS[opts.target][1], DRIVERS[opts.sink][1]})
    return f'''// {header(qf, opts)}

// Transfer {q.name}: copies {ts.spec.write_mode} into {ts.spec.table} in batches of {ts.spec.batch_size}
// rows, one transaction per batch, from SOURCE_URL to TARGET_URL. It prints
// {{"position": [...], "rows": N, "batches": N}} on exit; resume with -after KEY (once per key column).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

{"".join(f'	_ "{d}"{chr(10)}' for d in drivers)})

const firstSQL = {go_string(ts.first)}
const nextSQL = {go_string(ts.next)}
const insertHead = {go_string(ts.insert_head)}
const insertTail = {go_string(ts.insert_tail)}

var _ = time.Time{{}}

type keyList []string

func (k *keyList) String() string     {{ return strings.Join(*k, ",") }}
func (k *keyList) Set(v string) error {{ *k = append(*k, v); return nil }}

{_OPEN_DB.strip()}

func jsonText(v json.RawMessage) any {{
	if v == nil {{
		return nil
	}}
	return string(v)
}}

{times}func keyText(v any) string {{
	switch x := v.(type) {{
	case *int64:
		return strconv.FormatInt(*x, 10)
	case *int32:
		return strconv.FormatInt(int64(*x), 10)
	case *int16:
		return strconv.FormatInt(int64(*x), 10)
	case *string:
		return *x
	}}
	return fmt.Sprint(v)
}}

type report struct {{
	Position []string `json:"position"`
	Rows     int      `json:"rows"`
	Batches  int      `json:"batches"`
	Error    string   `json:"error,omitempty"`
}}

func main() {{
	var after keyList
	flag.Var(&after, "after", "resume after this key value (once per key column)")
	maxBatches := flag.Int("max-batches", 0, "stop after this many batches (0: all)")
	flag.Parse()
	rep := report{{Position: after}}
	if rep.Position == nil {{
		rep.Position = []string{{}}
	}}
	err := run(context.Background(), after, *maxBatches, &rep)
	if err != nil {{
		rep.Error = err.Error()
	}}
	text, _ := json.Marshal(rep)
	fmt.Println(string(text))
	if err != nil {{
		os.Exit(1)
	}}
}}

func run(ctx context.Context, after []string, maxBatches int, rep *report) error {{
	src, err := openDB(os.Getenv("SOURCE_URL"))
	if err != nil {{
		return err
	}}
	defer src.Close()
	dst, err := openDB(os.Getenv("TARGET_URL"))
	if err != nil {{
		return err
	}}
	defer dst.Close()
	if len(after) != 0 && len(after) != {len(ts.key_positions)} {{
		return fmt.Errorf("-after: give {len(ts.key_positions)} key value(s)")
	}}
	for maxBatches == 0 || rep.Batches < maxBatches {{
		var rows *sql.Rows
		if len(after) == 0 {{
			rows, err = src.QueryContext(ctx, firstSQL)
		}} else {{
			keyArgs := make([]any, len(after))
			for i, v := range after {{
				keyArgs[i] = v
			}}
			rows, err = src.QueryContext(ctx, nextSQL, keyArgs...)
		}}
		if err != nil {{
			return err
		}}
		var args []any
		var marks []string
		var last []string
		for rows.Next() {{
{chr(10).join(decls)}
			if err := rows.Scan({", ".join(ptrs)}); err != nil {{
				rows.Close()
				return err
			}}
			row := make([]string, {n})
			for j := range row {{
				row[j] = {placeholder}
			}}
			marks = append(marks, "("+strings.Join(row, ", ")+")")
			args = append(args, {", ".join(vals)})
			last = []string{{{keys}}}
		}}
		rows.Close()
		if err := rows.Err(); err != nil {{
			return err
		}}
		if len(marks) == 0 {{
			return nil
		}}
		tx, err := dst.BeginTx(ctx, nil)
		if err != nil {{
			return err
		}}
		stmt := insertHead + strings.Join(marks, ", ") + insertTail
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {{
			tx.Rollback()
			return err
		}}
		if err := tx.Commit(); err != nil {{
			return err
		}}
		after = last
		rep.Position = last
		rep.Rows += len(marks)
		rep.Batches++
	}}
	return nil
}}
'''
