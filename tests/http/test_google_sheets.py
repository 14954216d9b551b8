"""Google Sheets source and sink against the fake Sheets API and a token endpoint that
verifies the service account's JWT signature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etlsync import Pipeline
from etlsync.connectors.http.presets.google_sheets import GoogleSheetsSink, GoogleSheetsSource
from etlsync.core.checkpoint import MemoryCheckpointStore
from etlsync.testing import CollectingSink, MemorySource
from tests.http.fakes.base import serve
from tests.http.fakes.google import make_app, service_account

FAST = {"base_delay": 0.01, "max_attempts": 8}


def _grid() -> list[list[object]]:
    rows: list[list[object]] = [["id", "name", "price", "note"]]
    for i in range(1, 251):
        rows.append([i, f"item {i}", i * 1.5, "" if i % 3 else f"n{i}"])  # trailing empty cells
    rows[5] = [5, "five", {"formula": "=1+1", "value": 2.0}]
    return rows


async def test_source_reads_chunks_with_header_and_omitted_cells(tmp_path: Path) -> None:
    info, public = service_account("placeholder")
    app = make_app(public, info["client_email"], {"Items": _grid()}, quota_every=3)
    async with serve(app) as url:
        info["token_uri"] = f"{url}/token"
        creds = tmp_path / "sa.json"
        creds.write_text(json.dumps(info))
        src = GoogleSheetsSource("sheet-1", str(creds), ranges=["Items"], chunk_rows=100,
                                 base_url=url, retry=FAST)
        sink = CollectingSink()
        await Pipeline(src, [], [sink], name="g", checkpoint_store=MemoryCheckpointStore()).run()
        formatted = GoogleSheetsSource("sheet-1", {"file": str(creds)}, ranges=["Items!A1:C4"],
                                       value_render_option="FORMATTED_VALUE", base_url=url,
                                       retry=FAST)
        fsink = CollectingSink()
        await Pipeline(formatted, [], [fsink], name="f").run()
    rows = sink.rows
    assert len(rows) == 250 and rows[0] == {"id": 1, "name": "item 1", "price": 1.5, "note": None}
    assert rows[2]["note"] == "n3"
    assert rows[4] == {"id": 5, "name": "five", "price": 2.0, "note": None}
    assert app["quota_errors"] >= 1 and app["token_requests"] == 2  # one per source
    assert fsink.rows[0] == {"id": "1", "name": "item 1", "price": "1.50"}


async def test_a_jwt_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    info, _public = service_account("x")
    _other, other_public = service_account("x")
    app = make_app(other_public, info["client_email"], {"S": [["a"], [1]]})
    async with serve(app) as url:
        info["token_uri"] = f"{url}/token"
        src = GoogleSheetsSource("s", json.dumps(info), ranges=["S"], base_url=url, retry=FAST)
        with pytest.raises(Exception, match="Invalid JWT Signature"):
            await Pipeline(src, [], [CollectingSink()], name="x").run()


@pytest.mark.parametrize("mode", ["append", "overwrite", "update"])
async def test_sink_writes_by_append_overwrite_and_batch_update(mode: str) -> None:
    info, public = service_account("x")
    sheets: dict[str, list[list[object]]] = {"Out": [["old", "data"], ["x", "y"]]}
    app = make_app(public, info["client_email"], sheets, quota_every=3)
    rows = [{"id": i, "name": f"n{i}", "_row": i + 1} for i in range(1, 121)]
    async with serve(app) as url:
        info["token_uri"] = f"{url}/token"
        if mode == "update":
            sheets["Out"] = [["id", "name"]]
        sink = GoogleSheetsSink("s", json.dumps(info), sheet="Out", write_mode=mode,
                                columns=["id", "name"], base_url=url, retry=FAST)
        await Pipeline(MemorySource(rows, 50), [], [sink], name="w").run()
    grid = sheets["Out"]
    if mode == "append":
        assert grid[:2] == [["old", "data"], ["x", "y"]] and grid[2] == [1, "n1"]
        assert len(grid) == 122
    else:
        assert grid[0] == ["id", "name"] and grid[1] == [1, "n1"] and len(grid) == 121
    assert app["quota_errors"] >= 1
