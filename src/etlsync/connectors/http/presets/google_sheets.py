"""Google Sheets (API v4): a source reading ranges and a sink writing rows.

Auth is a service account: a JWT signed with its private key (RS256) exchanged at its
``token_uri`` for an access token (RFC 7523), renewed before it expires.

Source: each range (``Sheet1`` or ``Sheet1!A1:F``) is read ``chunk_rows`` rows at a time
with ``values.get`` (``majorDimension=ROWS``); the first row is the header (or columns are
``A``, ``B``, ...); the API omits trailing empty cells and rows, so a short row's missing
cells are ``None`` and an empty chunk ends the range. ``value_render_option`` picks typed
(``UNFORMATTED_VALUE``), formatted or formula values. The position is ``{"r": range index,
"row": next row}``.

Sink: ``append`` (``values.append`` with ``INSERT_ROWS``), ``overwrite`` (clears the range,
writes the header with ``values.update`` and the rows with ``values.batchUpdate`` at
explicit rows), ``update`` (``values.batchUpdate`` of the rows at ``row_field``'s row
number). Quota errors (429 ``RESOURCE_EXHAUSTED``) are retried with exponential backoff,
as Google asks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

from etlsync.connectors.http.client import HttpClient
from etlsync.connectors.http.config import Client, convert
from etlsync.core.batch import Batch, Row
from etlsync.core.capabilities import Capability
from etlsync.core.errors import ConfigError
from etlsync.core.stages import Sink, Source, StageContext

BASE_URL = "https://sheets.googleapis.com"
READ_SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
WRITE_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
_A1 = re.compile(r"^([A-Za-z]*)(\d*)$")


def column_letters(index: int) -> str:
    """``0`` -> ``A``, ``26`` -> ``AA``."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def _client(credentials: Any, scope: str, base_url: str, token_url: str | None,
            retry: dict[str, Any] | None, budget: dict[str, Any] | None) -> Client:
    auth: dict[str, Any] = {"type": "oauth2_jwt_bearer", "credentials": credentials,
                            "scope": scope}
    if token_url:
        auth["access_token_url"] = token_url
    spec: dict[str, Any] = {
        "base_url": base_url, "auth": auth,
        # 60 requests per minute per user; quota 429s back off exponentially (no Retry-After)
        "budget": budget or {"call_limit": 60, "period": 60.0,
                             "status_codes_for_ratelimit_hit": []},
        "retry": retry or {"base_delay": 1.0, "max_delay": 64.0, "max_attempts": 10}}
    result: Client = convert(spec, Client, "client")
    return result


def _sheet_of(a1: str) -> tuple[str, str, int, str]:
    """``Sheet1!B2:F`` -> (sheet, first column, first row, last column)."""
    sheet, _, cells = a1.partition("!")
    first, _, last = cells.partition(":")
    m1, m2 = _A1.match(first or "A1"), _A1.match(last or "")
    if m1 is None or m2 is None:
        raise ConfigError(f"ranges: {a1!r} is not A1 notation")
    return sheet, (m1.group(1) or "A").upper(), int(m1.group(2) or 1), (m2.group(1) or "").upper()


class GoogleSheetsSource(Source):
    """Rows of spreadsheet ranges (see the module docstring).

    :param credentials: the service-account JSON (a path, or ``{env: ...}`` / ``{file: ...}``).
    :param ranges: A1 ranges; a sheet name alone reads the whole sheet.
    """

    name = "google_sheets"
    capabilities = frozenset({Capability.PASSES})

    def __init__(self, spreadsheet_id: str, credentials: Any, *, ranges: Sequence[str] = ("Sheet1",),
                 header_row: bool = True, value_render_option: str = "UNFORMATTED_VALUE",
                 date_time_render_option: str = "FORMATTED_STRING", chunk_rows: int = 1000,
                 base_url: str = BASE_URL, token_url: str | None = None,
                 retry: dict[str, Any] | None = None, budget: dict[str, Any] | None = None) -> None:
        if value_render_option not in ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"):
            raise ConfigError("value_render_option: FORMATTED_VALUE, UNFORMATTED_VALUE or FORMULA")
        if date_time_render_option not in ("SERIAL_NUMBER", "FORMATTED_STRING"):
            raise ConfigError("date_time_render_option: SERIAL_NUMBER or FORMATTED_STRING")
        self.spreadsheet_id, self.ranges = spreadsheet_id, [_sheet_of(r) for r in ranges]
        self.header_row, self.chunk_rows = header_row, chunk_rows
        self.render = {"majorDimension": "ROWS", "valueRenderOption": value_render_option,
                       "dateTimeRenderOption": date_time_render_option}
        self.client_config = _client(credentials, READ_SCOPE, base_url, token_url, retry, budget)
        self.client: HttpClient | None = None

    def extra_metrics(self) -> dict[str, Any]:
        return self.client.extra_metrics() if self.client is not None else {}

    async def _get(self, a1: str) -> list[list[Any]]:
        assert self.client is not None
        resp = await self.client.request(
            "GET", f"v4/spreadsheets/{self.spreadsheet_id}/values/{quote(a1)}", params=self.render)
        return list(resp.body.get("values") or [])

    async def read(self, position: Any | None) -> AsyncIterator[Batch]:
        pos = dict(position) if isinstance(position, dict) else {}
        self.client = HttpClient(self.client_config)
        try:
            for r in range(int(pos.get("r", 0)), len(self.ranges)):
                sheet, col, first_row, last_col = self.ranges[r]
                end_col = last_col or "ZZZ"
                header: list[str]
                data_row = first_row
                if self.header_row:
                    got = await self._get(f"{sheet}!{col}{first_row}:{end_col}{first_row}")
                    header = [str(h) for h in got[0]] if got else []
                    data_row += 1
                row = int(pos["row"]) if r == int(pos.get("r", 0)) and "row" in pos else data_row
                while True:
                    values = await self._get(f"{sheet}!{col}{row}:{end_col}{row + self.chunk_rows - 1}")
                    if not self.header_row:
                        width = max((len(v) for v in values), default=0)
                        start = ord(col[-1]) - 65 if len(col) == 1 else 0
                        header = [column_letters(start + i) for i in range(width)]
                    rows = [self._row(header, v) for v in values]
                    row += self.chunk_rows
                    done = len(values) < self.chunk_rows
                    position = {"r": r + 1} if done else {"r": r, "row": row}
                    yield Batch(rows, stream=sheet, position=position)
                    if done:
                        break
        finally:
            await self.client.close()
        yield Batch([], stream=self.ranges[-1][0], position={"r": len(self.ranges)},
                    end_of_pass=True)

    @staticmethod
    def _row(header: list[str], values: list[Any]) -> Row:
        row: Row = dict.fromkeys(header)
        for name, value in zip(header, values, strict=False):
            row[name] = None if value == "" else value
        for i in range(len(header), len(values)):
            row[column_letters(i)] = values[i]
        return row


class GoogleSheetsSink(Sink):
    """Writes rows to a sheet (see the module docstring).

    :param sheet: the sheet (tab) name.
    :param columns: the columns written, in order (default: the first batch's).
    :param row_field: ``update``: the field holding each row's sheet row number.
    """

    name = "google_sheets"

    def __init__(self, spreadsheet_id: str, credentials: Any, *, sheet: str = "Sheet1",
                 write_mode: str = "append", columns: Sequence[str] | None = None,
                 header: bool = True, value_input_option: str = "RAW",
                 row_field: str = "_row", base_url: str = BASE_URL,
                 token_url: str | None = None, retry: dict[str, Any] | None = None,
                 budget: dict[str, Any] | None = None) -> None:
        if write_mode not in ("append", "overwrite", "update"):
            raise ConfigError("write_mode: append, overwrite or update")
        if value_input_option not in ("RAW", "USER_ENTERED"):
            raise ConfigError("value_input_option: RAW or USER_ENTERED")
        self.spreadsheet_id, self.sheet, self.write_mode = spreadsheet_id, sheet, write_mode
        self.columns = list(columns) if columns else None
        self.header, self.value_input_option, self.row_field = header, value_input_option, row_field
        self.client_config = _client(credentials, WRITE_SCOPE, base_url, token_url, retry, budget)
        self.client: HttpClient | None = None
        self._next_row = 1
        self._started = False
        self._resuming = False

    async def open(self, context: StageContext) -> None:
        self.client = HttpClient(self.client_config, where="sink.client")
        self._resuming = context.resume is not None and context.resume.pass_open

    def _base(self) -> str:
        return f"v4/spreadsheets/{self.spreadsheet_id}/values"

    async def _start(self, batch: Batch) -> None:
        assert self.client is not None
        self._started = True
        if self.columns is None:
            self.columns = [c for c in batch.column_names() if c != self.row_field] \
                if self.write_mode == "update" else batch.column_names()
        if self.write_mode == "overwrite":
            if self._resuming:
                raise ConfigError("google_sheets overwrite cannot resume an interrupted pass; "
                                  "reset the pipeline's checkpoint to rewrite the sheet")
            await self.client.request("POST", f"{self._base()}/{quote(self.sheet)}:clear", json={})
        if self.header and self.write_mode != "update":
            if self.write_mode == "overwrite":
                await self.client.request(
                    "PUT", f"{self._base()}/{quote(self.sheet + '!A1')}",
                    params={"valueInputOption": "RAW"}, json={"values": [self.columns]})
                self._next_row = 2
            elif not self._resuming:
                got = await self.client.request(
                    "GET", f"{self._base()}/{quote(self.sheet + '!1:1')}")
                if not got.body.get("values"):
                    await self._append([list(self.columns)])

    async def _append(self, values: list[list[Any]]) -> None:
        assert self.client is not None
        await self.client.request(
            "POST", f"{self._base()}/{quote(self.sheet)}:append",
            params={"valueInputOption": self.value_input_option, "insertDataOption": "INSERT_ROWS"},
            json={"majorDimension": "ROWS", "values": values})

    async def write(self, batch: Batch) -> None:
        assert self.client is not None
        if not len(batch):
            return
        if not self._started:
            await self._start(batch)
        assert self.columns is not None
        values = [[_cell(v) for v in row] for row in batch.view(self.columns)]
        if self.write_mode == "append":
            await self._append(values)
            return
        if self.write_mode == "overwrite":
            rows = list(range(self._next_row, self._next_row + len(values)))
            self._next_row += len(values)
        else:
            rows = [int(r[0]) for r in batch.view([self.row_field])]
        last = column_letters(len(self.columns) - 1)
        data = [{"range": f"{self.sheet}!A{n}:{last}{n}", "majorDimension": "ROWS", "values": [v]}
                for n, v in zip(rows, values, strict=True)]
        await self.client.request("POST", f"{self._base()}:batchUpdate",
                                  json={"valueInputOption": self.value_input_option, "data": data})

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
