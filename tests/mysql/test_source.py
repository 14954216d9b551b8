"""MysqlSource: keyset snapshots (resumable mid-table) and incremental reads with ties."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlsync.connectors.mysql import MysqlSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.core.errors import StageError
from etlsync.core.pipeline import Pipeline
from etlsync.core.schema import ColumnType
from etlsync.testing import CollectingSink
from tests.mysql.helpers import execute, options

pytestmark = pytest.mark.integration


async def test_snapshot_resumes_mid_table_with_composite_key(mysql_params: dict[str, Any],
                                                             unique_name: str) -> None:
    opts = options(mysql_params)
    t = unique_name
    await execute(opts, f"CREATE TABLE `{t}` (a int, b varchar(5), v int, PRIMARY KEY (a, b))",
                  f"INSERT INTO `{t}` VALUES " + ",".join(
                      f"({i // 3}, '{'xyz'[i % 3]}', {i})" for i in range(100)))
    store = MemoryCheckpointStore()
    first = CollectingSink(fail_on=lambda b: len(b.rows) and b.rows[0]["v"] >= 40 and 1 / 0)
    with contextlib.suppress(StageError):  # the injected failure
        await Pipeline(MysqlSource(t, connection=opts, batch_size=7), sinks=[first], name=t,
                       checkpoint_store=store).run()
    resumed_at = await store.load(t)
    assert resumed_at is not None and resumed_at.pass_open
    assert resumed_at.position["last_key"] is not None
    second = CollectingSink()
    await Pipeline(MysqlSource(t, connection=opts, batch_size=7), sinks=[second], name=t,
                   checkpoint_store=store).run()
    values = [r["v"] for r in first.rows + second.rows]
    assert values == list(range(100))  # every row once, in key order
    done = await store.load(t)
    assert done is not None and not done.pass_open
    schema = (await MysqlSource(t, connection=opts).discover())[t]
    assert schema.primary_key == ("a", "b") and schema.column("v").type == ColumnType.INTEGER


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=st.lists(st.integers(0, 5), min_size=1, max_size=30),
       later=st.lists(st.integers(0, 8), max_size=30), chunk=st.integers(1, 7))
def test_incremental_delivers_each_row_once_despite_ties(mysql_params: dict[str, Any],
                                                         first: list[int], later: list[int],
                                                         chunk: int) -> None:
    """Rows sharing the watermark's cursor value, even ones committed after a run, are
    delivered exactly once; rows below the watermark committed late are not re-read."""
    import uuid

    opts = options(mysql_params)
    t = f"t_{uuid.uuid4().hex[:10]}"

    async def run() -> list[Any]:
        await execute(opts, f"CREATE TABLE `{t}` (id int primary key, cur int)",
                      f"INSERT INTO `{t}` VALUES " + ",".join(
                          f"({i}, {c})" for i, c in enumerate(first)))
        store = MemoryCheckpointStore()
        got: list[Any] = []
        try:
            for rows in (None, later):
                if rows:
                    await execute(opts, f"INSERT INTO `{t}` VALUES " + ",".join(
                        f"({1000 + i}, {c})" for i, c in enumerate(rows)))
                sink = CollectingSink()
                await Pipeline(MysqlSource(t, connection=opts, sync_mode="incremental", cursor_field="cur",
                                           batch_size=chunk), sinks=[sink], name=t,
                               checkpoint_store=store).run()
                got.extend(sink.rows)
        finally:
            await execute(opts, f"DROP TABLE `{t}`")
        return got

    got = asyncio.run(run())
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids))
    wm = max(first)
    expected = set(range(len(first))) | {1000 + i for i, c in enumerate(later) if c >= wm}
    assert set(ids) == expected
