"""The documented example project runs: orders on a Berlin-time cron, the report after it,
then a rollback of the report's overwrite."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from etlsync.service import ManualClock, RunStatus, Service, load_project

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_the_serve_example_project(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "serve", tmp_path / "examples" / "serve")
    shutil.copytree(EXAMPLES / "data", tmp_path / "examples" / "data")
    root = tmp_path / "examples" / "serve"
    start = datetime(2027, 3, 28, 1, 50, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    clock = ManualClock(start)
    service = Service(load_project(root), clock=clock)
    await service.start()
    try:
        await clock.advance(10 * 60)  # 02:00 Berlin: orders fires, report follows
        await service.wait_idle()
        runs = {r.job: r for r in await service.runs()}
        assert runs["orders"].status is RunStatus.SUCCEEDED and runs["orders"].rows_read == 300
        assert runs["report"].status is RunStatus.SUCCEEDED
        assert runs["report"].context["upstream"]["orders"]["run_id"] == runs["orders"].id
        db = root / "out" / "shop.db"
        conn = sqlite3.connect(db)
        paid = conn.execute("SELECT count(*) FROM paid_orders").fetchone()[0]
        conn.close()
        assert paid > 0
        await service.rollback(runs["report"].id)
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'paid_orders'"
                            ).fetchall() == []  # the report's first run created it
        conn.close()
    finally:
        await service.stop()
