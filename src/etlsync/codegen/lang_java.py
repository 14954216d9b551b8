"""Java: JDBC static methods over a ``Connection`` in one final class, a record per result
row (boxed types for nullable columns), ``PreparedStatement`` with ``?`` placeholders."""

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
from etlsync.codegen.model import Param, Query, QueryFile, ResultColumn
from etlsync.codegen.transfer import TransferSql, transfer_sql

# logical -> (primitive or class, boxed, ResultSet getter expression with {i}, setter)
TYPES: dict[str, tuple[str, str]] = {
    "int16": ("short", "Short"), "int32": ("int", "Integer"), "int64": ("long", "Long"),
    "float32": ("float", "Float"), "float64": ("double", "Double"),
    "decimal": ("BigDecimal", "BigDecimal"), "text": ("String", "String"),
    "bool": ("boolean", "Boolean"), "date": ("LocalDate", "LocalDate"),
    "time": ("LocalTime", "LocalTime"), "timestamp": ("LocalDateTime", "LocalDateTime"),
    "timestamptz": ("OffsetDateTime", "OffsetDateTime"), "bytes": ("byte[]", "byte[]"),
    "json": ("String", "String"), "uuid": ("UUID", "UUID"), "unknown": ("String", "String"),
}
_PRIMITIVE_GET = {"short": "getShort", "int": "getInt", "long": "getLong", "float": "getFloat",
                  "double": "getDouble", "boolean": "getBoolean"}
_PRIMITIVE_SET = {"short": "setShort", "int": "setInt", "long": "setLong", "float": "setFloat",
                  "double": "setDouble", "boolean": "setBoolean"}
_SQL_TYPES = {"int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT", "float32": "REAL",
              "float64": "DOUBLE", "decimal": "NUMERIC", "bool": "BOOLEAN", "date": "DATE",
              "time": "TIME", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMP_WITH_TIMEZONE",
              "bytes": "VARBINARY"}


def java_type(logical: str, nullable: bool) -> str:
    prim, boxed = TYPES[logical]
    return boxed if nullable else prim


def generate(qf: QueryFile, texts: dict[str, str], opts: GenOptions) -> dict[str, str]:
    """``<package dirs>/Queries.java``, with ``opts.main`` ``Main.java`` beside it, and a
    program class per transfer (``CopyBooks.java`` for ``CopyBooks``)."""
    queries = queries_of(qf)
    methods = naming.unique(None, [(q.name, q.name) for q in queries], naming.camel, "java",
                            "query names")
    package = opts.package or "queries"
    base = package.replace(".", "/") + "/"
    files: dict[str, str] = {}
    if queries:
        files[base + "Queries.java"] = _queries_class(queries, methods, texts, opts, package, qf)
    if queries and opts.main:
        files[base + "Main.java"] = _runner(queries, methods, opts, package, qf)
    transfers = transfers_of(qf)
    classes = naming.unique(None, [(q.name, q.name) for q in transfers], naming.pascal, "java",
                            "transfer names")
    for q, cls in zip(transfers, classes, strict=True):
        if cls in ("Queries", "Main"):
            raise q.error(f"a transfer named {q.name!r} would overwrite {cls}.java: rename it")
        ts = transfer_sql(q, texts[q.name], opts.target, opts.sink)
        files[f"{base}{cls}.java"] = _transfer(q, cls, ts, opts, package, qf)
    return files


def _get(c: ResultColumn, i: int, dialect: str) -> str:
    t = java_type(c.type.logical, c.nullable)
    if t in _PRIMITIVE_GET:
        return f"rs.{_PRIMITIVE_GET[t]}({i})"
    logical = c.type.logical
    if logical in ("int16", "int32", "int64", "float32", "float64", "bool"):
        return f"nullable(rs, rs.{_PRIMITIVE_GET[TYPES[logical][0]]}({i}))"
    if logical == "decimal":
        return f"rs.getBigDecimal({i})"
    if logical == "bytes":
        return f"rs.getBytes({i})"
    if logical == "uuid":
        return f"uuid(rs.getString({i}))"
    if logical in ("date", "time", "timestamp", "timestamptz"):
        return f"rs.getObject({i}, {TYPES[logical][0]}.class)"
    return f"rs.getString({i})"


def _bind(p: Param, name: str, i: int, dialect: str) -> str:
    return _set(p.type.logical, p.nullable, name, i, dialect)


def _set(logical: str, nullable: bool, name: str, i: int | str, dialect: str) -> str:
    """The statement binding ``name`` (a Java expression) at index ``i`` of ``ps``."""
    t = java_type(logical, nullable)
    if t in _PRIMITIVE_SET:
        return f"ps.{_PRIMITIVE_SET[t]}({i}, {name});"
    if logical in ("json", "uuid", "unknown") and dialect == "postgres":
        value = f"{name} == null ? null : {name}.toString()" if logical == "uuid" else name
        return f"ps.setObject({i}, {value}, Types.OTHER);"
    if logical == "uuid":
        return f"ps.setString({i}, {name} == null ? null : {name}.toString());"
    sql_type = _SQL_TYPES.get(logical, "VARCHAR")
    return f"if ({name} == null) ps.setNull({i}, Types.{sql_type}); else ps.setObject({i}, {name});"


def _queries_class(queries: list[Query], methods: list[str], texts: dict[str, str],
                   opts: GenOptions, package: str, qf: QueryFile) -> str:
    style = "qmark"  # JDBC: ? for every database
    out = [f"// {header(qf, opts)}", f"package {package};", "",
           "import java.math.BigDecimal;", "import java.sql.Connection;",
           "import java.sql.PreparedStatement;", "import java.sql.ResultSet;",
           "import java.sql.SQLException;", "import java.sql.Types;", "import java.time.LocalDate;",
           "import java.time.LocalDateTime;", "import java.time.LocalTime;",
           "import java.time.OffsetDateTime;", "import java.util.ArrayList;", "import java.util.List;",
           "import java.util.Optional;", "import java.util.UUID;", "",
           "/** The queries of " + opts.source_name + ", as JDBC calls. */",
           "public final class Queries {", "    private Queries() {}", ""]
    for q, method in zip(queries, methods, strict=True):
        r = rendered(q, texts, style)
        const = naming.snake(q.name).upper() + "_SQL"
        out.append(f"    public static final String {const} =")
        lines = one_line(r.sql).split("\n")
        for j, line in enumerate(lines):
            sep = " +" if j < len(lines) - 1 else ";"
            out.append(f"        {c_string(line + (chr(10) if j < len(lines) - 1 else ''))}{sep}")
        out.append("")
        pnames = naming.unique(q, [(p.name, p.name) for p in q.params], naming.camel, "java",
                               "parameters")
        params = "".join(f", {java_type(p.type.logical, p.nullable)} {n}"
                         for n, p in zip(pnames, q.params, strict=True))
        binds = [f"            {_bind(q.params[idx], pnames[idx], j + 1, opts.target)}"
                 for j, idx in enumerate(r.args)]
        if q.kind in ("exec", "execrows"):
            ret = "void" if q.kind == "exec" else "int"
            out += [f"    /** Runs {q.name}" + ("." if q.kind == "exec" else
                                                 "; returns the number of rows it changed.") + " */",
                    f"    public static {ret} {method}(Connection conn{params}) throws SQLException {{",
                    f"        try (PreparedStatement ps = conn.prepareStatement({const})) {{", *binds,
                    "            " + ("ps.executeUpdate();" if q.kind == "exec" else
                                      "return ps.executeUpdate();"), "        }", "    }", ""]
            continue
        row = naming.pascal(q.name) + "Row"
        fields = naming.unique(q, [(c.name, c.name) for c in q.columns], naming.camel, "java",
                               "result columns")
        comps = ", ".join(f"{java_type(c.type.logical, c.nullable)} {f}"
                          for f, c in zip(fields, q.columns, strict=True))
        unknown = [f"{c.name}: SQL type {c.type.sql or '?'}, read as text" for c in q.columns
                   if c.type.logical == "unknown"]
        out.append(f"    /** A row of {q.name}." + (f" ({'; '.join(unknown)})" if unknown else "")
                   + " */")
        out.append(f"    public record {row}({comps}) {{}}")
        out.append("")
        gets = ", ".join(_get(c, i + 1, opts.target) for i, c in enumerate(q.columns))
        out += [f"    static {row} read{row}(ResultSet rs) throws SQLException {{",
                f"        return new {row}({gets});", "    }", ""]
        if q.kind == "one":
            out += [f"    /** Runs {q.name}; empty when no row matches. */",
                    f"    public static Optional<{row}> {method}(Connection conn{params}) "
                    "throws SQLException {",
                    f"        try (PreparedStatement ps = conn.prepareStatement({const})) {{", *binds,
                    "            try (ResultSet rs = ps.executeQuery()) {",
                    f"                return rs.next() ? Optional.of(read{row}(rs)) : Optional.empty();",
                    "            }", "        }", "    }", ""]
        else:
            out += [f"    /** Runs {q.name}. */",
                    f"    public static List<{row}> {method}(Connection conn{params}) "
                    "throws SQLException {",
                    f"        try (PreparedStatement ps = conn.prepareStatement({const})) {{", *binds,
                    "            try (ResultSet rs = ps.executeQuery()) {",
                    f"                List<{row}> items = new ArrayList<>();",
                    f"                while (rs.next()) items.add(read{row}(rs));",
                    "                return items;", "            }", "        }", "    }", ""]
    out += ["    static <T> T nullable(ResultSet rs, T value) throws SQLException {",
            "        return rs.wasNull() ? null : value;", "    }", "",
            "    static UUID uuid(String text) {",
            "        return text == null ? null : UUID.fromString(text);", "    }", "}", ""]
    return "\n".join(out)


_PARSE = {"int16": "Short.parseShort({a})", "int32": "Integer.parseInt({a})",
          "int64": "Long.parseLong({a})", "float32": "Float.parseFloat({a})",
          "float64": "Double.parseDouble({a})", "decimal": "new BigDecimal({a})",
          "bool": "Boolean.parseBoolean({a})", "date": "LocalDate.parse({a})",
          "time": "LocalTime.parse({a})", "timestamp": "LocalDateTime.parse({a})",
          "timestamptz": "OffsetDateTime.parse({a})", "bytes": "Base64.getDecoder().decode({a})",
          "uuid": "UUID.fromString({a})"}


def _json_value(logical: str, expr: str) -> str:
    if logical in ("int16", "int32", "int64", "float32", "float64", "bool"):
        return f"String.valueOf({expr})"
    if logical == "json":
        return expr
    if logical == "bytes":
        return f"quote(Base64.getEncoder().encodeToString({expr}))"
    return f"quote(String.valueOf({expr}))"


_CONNECT = """    /** A JDBC connection for a postgresql:// or mysql:// URL (user, password and driver
     * options such as TLS from it). */
    static Connection connect(String raw) throws SQLException {
        URI url;
        try {
            url = URI.create(raw == null ? "" : raw);
        } catch (IllegalArgumentException e) {
            throw new SQLException("bad database URL"); // the URL may hold a password: not repeated
        }
        Properties props = new Properties();
        String info = url.getRawUserInfo() == null ? "" : url.getRawUserInfo();
        String[] user = info.split(":", 2);
        props.setProperty("user", URLDecoder.decode(user[0], StandardCharsets.UTF_8));
        if (user.length > 1) {
            props.setProperty("password", URLDecoder.decode(user[1], StandardCharsets.UTF_8));
        }
        String scheme = url.getScheme() == null ? "" : url.getScheme();
        boolean mysql = scheme.startsWith("mysql") || scheme.startsWith("mariadb");
        String jdbc = (mysql ? "jdbc:mariadb://" : "jdbc:postgresql://") + url.getHost()
            + (url.getPort() > 0 ? ":" + url.getPort() : "") + url.getPath()
            + (url.getRawQuery() == null ? "" : "?" + url.getRawQuery()); // sslmode=, sslMode=...
        return DriverManager.getConnection(jdbc, props);
    }
"""

_QUOTE = r"""    /** A JSON string literal. */
    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c)); else sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
"""


def _runner(queries: list[Query], methods: list[str], opts: GenOptions, package: str,
            qf: QueryFile) -> str:
    cases, writers = [], []
    for q, method in zip(queries, methods, strict=True):
        args = []
        lines = [f"            case {c_string(q.name)}: {{",
                 f"                need(a, {len(q.params)});"]
        for i, p in enumerate(q.params):
            t = java_type(p.type.logical, p.nullable)
            parse = _PARSE.get(p.type.logical, "{a}").format(a=f"a[{i}]")
            value = f"isNull(a[{i}]) ? null : {parse}" if p.nullable else parse
            lines.append(f"                {t} p{i} = {value};")
            args.append(f"p{i}")
        call = f"Queries.{method}(conn" + "".join(", " + x for x in args) + ")"
        if q.kind == "exec":
            lines += [f"                {call};", '                return "null";']
        elif q.kind == "execrows":
            lines.append(f"                return String.valueOf({call});")
        elif q.kind == "one":
            row = naming.pascal(q.name) + "Row"
            lines.append(f'                return {call}.map(Main::json{row}).orElse("null");')
        else:
            row = naming.pascal(q.name) + "Row"
            lines.append("                StringBuilder sb = new StringBuilder(\"[\");")
            lines.append(f"                for (Queries.{row} r : {call}) {{")
            lines.append('                    if (sb.length() > 1) sb.append(",");')
            lines.append(f"                    sb.append(json{row}(r));")
            lines.append("                }")
            lines.append('                return sb.append("]").toString();')
        lines.append("            }")
        cases.append("\n".join(lines))
        if q.kind in ("one", "many"):
            row = naming.pascal(q.name) + "Row"
            fields = naming.unique(q, [(c.name, c.name) for c in q.columns], naming.camel, "java",
                                   "result columns")
            parts = []
            for f, c in zip(fields, q.columns, strict=True):
                expr = f"r.{f}()"
                value = _json_value(c.type.logical, expr)
                if c.nullable or TYPES[c.type.logical][0] == TYPES[c.type.logical][1]:
                    value = f'({expr} == null ? "null" : {value})'
                parts.append(f"{c_string(json.dumps(c.name) + ':')} + {value}")
            body = ' + "," + '.join(parts) or '""'
            writers.append(f"    static String json{row}(Queries.{row} r) {{\n"
                           f"        return \"{{\" + {body} + \"}}\";\n    }}\n")
    return f"""// {header(qf, opts)}
package {package};

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.math.BigDecimal;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.util.Base64;
import java.util.Properties;
import java.util.UUID;

/** The runner: each stdin line is a query name and its arguments, tab separated (\\N: NULL,
 * bytes in base64); each result is printed as one JSON line. DATABASE_URL names the database. */
public final class Main {{
    private Main() {{}}

    public static void main(String[] argv) throws Exception {{
        try (Connection conn = connect(System.getenv("DATABASE_URL"));
             BufferedReader in = new BufferedReader(
                 new InputStreamReader(System.in, StandardCharsets.UTF_8))) {{
            String line;
            while ((line = in.readLine()) != null) {{
                String[] f = line.split("\\t", -1);
                String[] a = java.util.Arrays.copyOfRange(f, 1, f.length);
                System.out.println(call(conn, f[0], a));
            }}
        }}
    }}

{_CONNECT}
    static boolean isNull(String s) {{
        return s.equals("\\\\N");
    }}

    static void need(String[] a, int n) {{
        if (a.length != n) {{
            throw new IllegalArgumentException("expected " + n + " arguments, got " + a.length);
        }}
    }}

{_QUOTE}
    static String call(Connection conn, String name, String[] a) throws Exception {{
        switch (name) {{
{chr(10).join(cases)}
            default:
                throw new IllegalArgumentException("unknown query " + name);
        }}
    }}

{chr(10).join(writers)}}}
"""


# -- transfers ---------------------------------------------------------------------------------
def _key_text(logical: str, expr: str) -> str:
    return f"{expr}.toPlainString()" if logical == "decimal" else f"String.valueOf({expr})"


def _transfer(q: Query, cls: str, ts: TransferSql, opts: GenOptions, package: str,
              qf: QueryFile) -> str:
    fields = naming.unique(q, [(c.name, c.name) for c in ts.columns], naming.camel, "java",
                           "result columns")
    nullable = [ResultColumn(c.name, c.type, True) for c in ts.columns]
    comps = ", ".join(f"{java_type(c.type.logical, True)} {f}"
                      for f, c in zip(fields, ts.columns, strict=True))
    gets = ",\n                            ".join(_get(c, i + 1, opts.target)
                                                  for i, c in enumerate(nullable))
    binds = "\n".join(f"                {_set(c.type.logical, True, f'r.{f}()', f'at + {j}', opts.sink)}"
                      for j, (f, c) in enumerate(zip(fields, ts.columns, strict=True)))
    keys = ", ".join(_key_text(ts.columns[p].type.logical, f"last.{fields[p]}()")
                     for p in ts.key_positions)
    spec = ts.spec
    lines = [f"    static final String {name} =\n        {c_string(text)};" for name, text in (
        ("FIRST_SQL", ts.first), ("NEXT_SQL", ts.next_in("qmark")), ("INSERT_HEAD", ts.insert_head),
        ("INSERT_TAIL", ts.insert_tail))]
    return f"""// {header(qf, opts)}
package {package};

import java.math.BigDecimal;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.UUID;

/**
 * Transfer {q.name}: copies ({spec.write_mode}) into {spec.table} in batches of {spec.batch_size} rows, one
 * transaction per batch, from SOURCE_URL to TARGET_URL. Prints {{"position": [...], "rows": N,
 * "batches": N}} on exit; resume with --after KEY (once per key column), stop early with
 * --max-batches N.
 */
public final class {cls} {{
    private {cls}() {{}}

{chr(10).join(lines)}
    static final int WIDTH = {len(ts.columns)};
    static final int KEYS = {ts.key_count()};

    /** A row of the source query. */
    record Row({comps}) {{}}

    static final class Report {{
        List<String> position;
        long rows;
        long batches;
        String error;

        String json() {{
            StringBuilder sb = new StringBuilder("{{\\"position\\": [");
            for (int i = 0; i < position.size(); i++) {{
                sb.append(i == 0 ? "" : ", ").append(quote(position.get(i)));
            }}
            sb.append("], \\"rows\\": ").append(rows).append(", \\"batches\\": ").append(batches);
            if (error != null) sb.append(", \\"error\\": ").append(quote(error));
            return sb.append("}}").toString();
        }}
    }}

    public static void main(String[] argv) {{
        List<String> after = new ArrayList<>();
        int maxBatches = 0;
        try {{
            for (int i = 0; i < argv.length; i++) {{
                if (argv[i].equals("--after") && i + 1 < argv.length) {{
                    after.add(argv[++i]);
                }} else if (argv[i].equals("--max-batches") && i + 1 < argv.length) {{
                    maxBatches = Integer.parseInt(argv[++i]);
                }} else {{
                    throw new IllegalArgumentException(argv[i]);
                }}
            }}
        }} catch (IllegalArgumentException e) {{
            System.err.println("usage: {cls} [--after KEY]... [--max-batches N] (bad: "
                + e.getMessage() + ")");
            System.exit(2);
        }}
        Report rep = new Report();
        rep.position = after;
        int code = 0;
        try {{
            copy(after, maxBatches, rep);
        }} catch (Exception e) {{
            rep.error = e.getClass().getSimpleName() + ": " + e.getMessage();
            code = 1;
        }}
        System.out.println(rep.json());
        System.exit(code);
    }}

    static void copy(List<String> after, int maxBatches, Report rep) throws SQLException {{
        if (!after.isEmpty() && after.size() != KEYS) {{
            throw new IllegalArgumentException("--after: give " + KEYS + " key value(s)");
        }}
        try (Connection src = connect(System.getenv("SOURCE_URL"));
             Connection dst = connect(System.getenv("TARGET_URL"))) {{
            dst.setAutoCommit(false);
            while (maxBatches == 0 || rep.batches < maxBatches) {{
                List<Row> rows = page(src, after);
                if (rows.isEmpty()) return;
                write(dst, rows);
                Row last = rows.get(rows.size() - 1);
                after = List.of({keys});
                rep.position = after;
                rep.rows += rows.size();
                rep.batches++;
            }}
        }}
    }}

    static List<Row> page(Connection src, List<String> after) throws SQLException {{
        try (PreparedStatement ps = src.prepareStatement(after.isEmpty() ? FIRST_SQL : NEXT_SQL)) {{
            for (int i = 0; i < after.size(); i++) ps.setString(i + 1, after.get(i));
            try (ResultSet rs = ps.executeQuery()) {{
                List<Row> rows = new ArrayList<>();
                while (rs.next()) {{
                    rows.add(new Row({gets}));
                }}
                return rows;
            }}
        }}
    }}

    /** One multi-row INSERT of the batch in one transaction. */
    static void write(Connection dst, List<Row> rows) throws SQLException {{
        StringBuilder sql = new StringBuilder(INSERT_HEAD);
        String marks = "(" + "?, ".repeat(WIDTH - 1) + "?)";
        for (int n = 0; n < rows.size(); n++) sql.append(n == 0 ? "" : ", ").append(marks);
        sql.append(INSERT_TAIL);
        try (PreparedStatement ps = dst.prepareStatement(sql.toString())) {{
            for (int n = 0; n < rows.size(); n++) {{
                Row r = rows.get(n);
                int at = n * WIDTH + 1;
{binds}
            }}
            ps.executeUpdate();
            dst.commit();
        }} catch (SQLException e) {{
            dst.rollback();
            throw e;
        }}
    }}

    static <T> T nullable(ResultSet rs, T value) throws SQLException {{
        return rs.wasNull() ? null : value;
    }}

    static UUID uuid(String text) {{
        return text == null ? null : UUID.fromString(text);
    }}

{_CONNECT}
{_QUOTE}}}
"""
