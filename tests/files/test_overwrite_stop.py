"""An overwrite file sink installs the new file only after a complete pass, not on a stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from etlsync import Pipeline
from etlsync.connectors.files import CsvSink
from etlsync.testing import MemorySource


async def test_a_stopped_run_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("id\nold\n")
    sink = CsvSink(target, write_mode="overwrite")
    pipeline = Pipeline(MemorySource([{"id": i} for i in range(50)], 10, follow=True), [], sink)
    task = asyncio.create_task(pipeline.run(handle_signals=False))
    while pipeline.metrics["sink:" + (sink.name or "CsvSink")].rows_in < 50:
        await asyncio.sleep(0.01)
    pipeline.stop()
    assert (await task).status == "stopped"
    assert target.read_text() == "id\nold\n"


async def test_a_completed_run_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("id\nold\n")
    await Pipeline(MemorySource([{"id": i} for i in range(3)]), [],
                   CsvSink(target, write_mode="overwrite")).run()
    assert target.read_text().split() == ["id", "0", "1", "2"]
