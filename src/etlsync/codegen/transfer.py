"""Transfers as programs: the language-neutral SQL of a ``:transfer`` (keyset pages of the
SELECT on the source, a multi-row INSERT or upsert per batch on the sink), shared by every
language's program template."""

from __future__ import annotations

from dataclasses import dataclass

from etlsync.codegen.dialect import escape_text, mark
from etlsync.codegen.model import Query, ResultColumn, TransferSpec

KEY_TYPES = ("int16", "int32", "int64", "text", "uuid", "decimal")


@dataclass(frozen=True, slots=True)
class TransferSql:
    """``first``/``next``: the page queries (``next`` binds the last key, one placeholder per
    key column, in ``source``'s placeholder style; :meth:`next_in` gives another style);
    ``insert_head`` + rows + ``insert_tail``."""

    first: str
    next: str
    insert_head: str
    insert_tail: str
    key_positions: list[int]  # indexes of the key columns among the selected columns
    columns: list[ResultColumn]
    spec: TransferSpec
    base: str = ""  # the paged SELECT without WHERE and ORDER BY
    order_limit: str = ""
    key_sql: tuple[str, ...] = ()  # quoted key columns
    key_casts: tuple[str, ...] = ()  # PostgreSQL: the type each key parameter is cast to

    def next_in(self, style: str) -> str:
        """``next`` with the placeholders of ``style`` (see :func:`etlsync.codegen.dialect.mark`),
        the rest of the text escaped for it."""
        marks = [mark(style, i, f"k{i}") for i in range(len(self.key_sql))]
        if self.key_casts:
            marks = [f"CAST({m} AS {c})" for m, c in zip(marks, self.key_casts, strict=True)]
        keys = [escape_text(k, style) for k in self.key_sql]
        cond = f"{keys[0]} > {marks[0]}" if len(keys) == 1 else \
            f"({', '.join(keys)}) > ({', '.join(marks)})"
        return f"{escape_text(self.base, style)} WHERE {cond}{escape_text(self.order_limit, style)}"

    def key_count(self) -> int:
        return len(self.key_positions)


def quote(name: str, dialect: str) -> str:
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _qualified(name: str, dialect: str) -> str:
    return ".".join(quote(p, dialect) for p in name.split("."))


def transfer_sql(q: Query, select_text: str, source: str, sink: str) -> TransferSql:
    """:raises CodegenError: parameters in the SELECT, a key column of an unsupported type."""
    spec = q.transfer
    assert spec is not None
    if q.params:
        raise q.error(":transfer takes no parameters (the program pages by its key)")
    names = [c.name for c in q.columns]
    positions = [spec.columns.index(k) for k in spec.key]
    for k, pos in zip(spec.key, positions, strict=True):
        col = q.columns[pos]
        if col.type.logical not in KEY_TYPES:
            raise q.error(f"key={k}: a {col.type.logical} key cannot page a transfer "
                          f"(use one of {', '.join(KEY_TYPES)})")
    src_keys = [quote(names[p], source) for p in positions]
    outer = ", ".join(quote(n, source) for n in names)
    order = ", ".join(src_keys)
    base = f"SELECT {outer} FROM ({select_text}) AS etl_src"
    n = len(src_keys)
    if source == "postgres":
        marks = [f"${i + 1}" for i in range(n)]
        casts = [f"CAST({m} AS {_pg_cast(q.columns[p].type.logical)})" for m, p in
                 zip(marks, positions, strict=True)]
    else:
        casts = ["?"] * n
    cond = f"{src_keys[0]} > {casts[0]}" if n == 1 else \
        f"({', '.join(src_keys)}) > ({', '.join(casts)})"
    limit = f" ORDER BY {order} LIMIT {spec.batch_size}"
    cols = ", ".join(quote(c, sink) for c in spec.columns)
    head = f"INSERT INTO {_qualified(spec.table, sink)} ({cols}) VALUES "
    tail = ""
    if spec.write_mode == "upsert":
        others = [c for c in spec.columns if c not in spec.key]
        if sink == "postgres":
            keys = ", ".join(quote(k, sink) for k in spec.key)
            sets = ", ".join(f"{quote(c, sink)} = EXCLUDED.{quote(c, sink)}" for c in others)
            tail = f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {sets}" if others else "NOTHING")
        else:
            sets = ", ".join(f"{quote(c, sink)} = VALUES({quote(c, sink)})" for c in others or spec.key)
            tail = f" ON DUPLICATE KEY UPDATE {sets}"
    key_casts = tuple(_pg_cast(q.columns[p].type.logical) for p in positions) \
        if source == "postgres" else ()
    return TransferSql(first=base + limit, next=f"{base} WHERE {cond}{limit}", insert_head=head,
                       insert_tail=tail, key_positions=positions, columns=q.columns, spec=spec,
                       base=base, order_limit=limit, key_sql=tuple(src_keys), key_casts=key_casts)


def _pg_cast(logical: str) -> str:
    return {"int16": "smallint", "int32": "integer", "int64": "bigint", "uuid": "uuid",
            "decimal": "numeric"}.get(logical, "text")
