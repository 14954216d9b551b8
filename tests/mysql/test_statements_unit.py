"""Which statements in QUERY events change rows of which tables (statements.classify)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlsync.connectors.mysql.config import quote
from etlsync.connectors.mysql.statements import classify, first_word


@pytest.mark.parametrize(("sql", "kind", "table"), [
    ("INSERT INTO t VALUES (1)", "dml", ("db", "t")),
    ("insert low_priority ignore into `db2`.`t` select * from u", "dml", ("db2", "t")),
    ("/* a comment */ REPLACE t SET a = 1", "dml", ("db", "t")),
    ("-- note\nUPDATE a JOIN `x``y` ON a.id = `x``y`.id SET a.v = 1", "dml", ("db", "x`y")),
    ("DELETE t1, t2 FROM t1 INNER JOIN t2 USING (id)", "dml", ("db", "t2")),
    ("# c\nDELETE FROM other.t WHERE id = 5", "dml", ("other", "t")),
    ("LOAD DATA INFILE '/tmp/x' INTO TABLE t", "dml", ("db", "t")),
    ("/*!40000 INSERT INTO t VALUES (1) */", "dml", ("db", "t")),
    ('INSERT INTO "t" VALUES (1)', "dml", ("db", "t")),  # ANSI_QUOTES: a name
    ("WITH c AS (SELECT 1) UPDATE t SET v = 1", "dml", ("db", "t")),
    ("TRUNCATE TABLE `db3`.`t`", "truncate", ("db3", "t")),
    ("truncate t", "truncate", ("db", "t")),
    ("ALTER TABLE t TRUNCATE PARTITION p0", "dml", ("db", "t")),
    ("ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE u", "dml", ("db", "u")),
])
def test_changes_name_their_tables(sql: str, kind: str, table: tuple[str, str]) -> None:
    got_kind, tables = classify(sql, "db")
    assert got_kind == kind and table in tables, (got_kind, tables)


@pytest.mark.parametrize("sql", [
    "BEGIN", "COMMIT", "CREATE TABLE t (id int)", "ALTER TABLE t ADD COLUMN x int",
    "DROP TABLE t", "SELECT * FROM t", "SAVEPOINT s", "SET @x = 1", "XA START 'x'",
    "ALTER TABLE t ADD PARTITION (PARTITION p9 VALUES LESS THAN (99))",
])
def test_other_statements_change_no_rows(sql: str) -> None:
    assert classify(sql, "db") == ("other", set())


def test_strings_and_comments_are_not_names() -> None:
    kind, tables = classify("INSERT INTO a VALUES ('t', \"x\\\"y\") /* t */ -- t", "db")
    assert kind == "dml" and ("db", "a") in tables and ("db", "t") not in tables
    assert first_word("  /* x */ /*!50001 UPDATE */ t") == "UPDATE"


_NAME = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12)


@given(_NAME, _NAME, st.sampled_from(["INSERT INTO {} VALUES (1)", "UPDATE {} SET a = 1",
                                      "DELETE FROM {} WHERE 1", "REPLACE INTO {} SELECT 1"]))
def test_any_quoted_name_is_found(db: str, table: str, template: str) -> None:
    kind, tables = classify(template.format(f"{quote(db)}.{quote(table)}"), "default")
    assert kind == "dml" and (db, table) in tables
