"""Java: JDBC static methods over a ``Connection`` in one final class, a record per result
row (boxed types for nullable columns), ``PreparedStatement`` with ``?`` placeholders."""

from __future__ import annotations

import json

from etlsync.codegen import naming
from etlsync.codegen.common import GenOptions, c_string, header, one_line, queries_of, rendered
from etlsync.codegen.model import Param, Query, QueryFile, ResultColumn

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
    """``<package dirs>/Queries.java`` and, with ``opts.main``, ``Main.java`` beside it."""
    queries = queries_of(qf)
    methods = naming.unique(None, [(q.name, q.name) for q in queries], naming.camel, "java",
                            "query names")
    package = opts.package or "queries"
    base = package.replace(".", "/") + "/"
    files = {base + "Queries.java": _queries_class(queries, methods, texts, opts, package, qf)}
    if opts.main:
        files[base + "Main.java"] = _runner(queries, methods, opts, package, qf)
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


def _set(p: Param, name: str, i: int, dialect: str) -> str:
    t = java_type(p.type.logical, p.nullable)
    logical = p.type.logical
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
        binds = [f"            {_set(q.params[idx], pnames[idx], j + 1, opts.target)}"
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
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
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
        URI url = URI.create(System.getenv("DATABASE_URL"));
        Properties props = new Properties();
        String[] user = (url.getRawUserInfo() == null ? "" : url.getRawUserInfo()).split(":", 2);
        props.setProperty("user", java.net.URLDecoder.decode(user[0], StandardCharsets.UTF_8));
        if (user.length > 1) props.setProperty("password", java.net.URLDecoder.decode(user[1], StandardCharsets.UTF_8));
        boolean mysql = url.getScheme().startsWith("mysql") || url.getScheme().startsWith("mariadb");
        String jdbc = (mysql ? "jdbc:mariadb://" : "jdbc:postgresql://") + url.getHost()
            + (url.getPort() > 0 ? ":" + url.getPort() : "") + url.getPath();
        try (Connection conn = DriverManager.getConnection(jdbc, props);
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {{
            String line;
            while ((line = in.readLine()) != null) {{
                String[] f = line.split("\\t", -1);
                String[] a = java.util.Arrays.copyOfRange(f, 1, f.length);
                System.out.println(call(conn, f[0], a));
            }}
        }}
    }}

    static boolean isNull(String s) {{
        return s.equals("\\\\N");
    }}

    static void need(String[] a, int n) {{
        if (a.length != n) throw new IllegalArgumentException("expected " + n + " arguments, got " + a.length);
    }}

    static String quote(String s) {{
        StringBuilder sb = new StringBuilder("\\"");
        for (char c : s.toCharArray()) {{
            switch (c) {{
                case '"': sb.append("\\\\\\""); break;
                case '\\\\': sb.append("\\\\\\\\"); break;
                case '\\n': sb.append("\\\\n"); break;
                case '\\r': sb.append("\\\\r"); break;
                case '\\t': sb.append("\\\\t"); break;
                default:
                    if (c < 0x20) sb.append(String.format("\\\\u%04x", (int) c)); else sb.append(c);
            }}
        }}
        return sb.append('"').toString();
    }}

    static String call(Connection conn, String name, String[] a) throws Exception {{
        switch (name) {{
{chr(10).join(cases)}
            default:
                throw new IllegalArgumentException("unknown query " + name);
        }}
    }}

{chr(10).join(writers)}}}
"""
