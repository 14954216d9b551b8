"""A fake of Google's OAuth 2.0 token endpoint for service accounts and of the Sheets API v4
``spreadsheets.values`` methods.

Token endpoint (https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
``POST token_uri`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
``assertion`` = a JWT signed RS256 with the service account's key, header ``kid`` = its
``private_key_id``, claims ``iss`` (the client email), ``scope``, ``aud`` (the token URI),
``iat`` and ``exp`` (at most an hour later). The fake verifies the signature with the
account's public key and answers ``{"access_token", "expires_in", "token_type": "Bearer"}``,
or ``400 {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}``.

Values (https://developers.google.com/sheets/api/reference/rest/v4/spreadsheets.values):
``get`` returns ``{"range", "majorDimension": "ROWS", "values"}`` with empty trailing rows
and columns omitted (and no ``values`` at all for an empty range); ``valueRenderOption``
``FORMATTED_VALUE`` (strings as displayed), ``UNFORMATTED_VALUE`` (numbers as numbers),
``FORMULA``; ``update`` (PUT), ``append`` (``insertDataOption=INSERT_ROWS``, after the
last row of the table), ``batchUpdate`` and ``clear``. Errors are ``{"error": {"code",
"message", "status"}}``: 401 ``UNAUTHENTICATED``, 403 ``PERMISSION_DENIED`` for a read-only
scope writing, 429 ``RESOURCE_EXHAUSTED`` for quota (the usage limits page: 60 requests per
minute per user; clients retry with truncated exponential backoff).
"""

from __future__ import annotations

import re
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.http.fakes.base import Faults

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_CELL = re.compile(r"^([A-Z]*)(\d*)$")


def service_account(token_uri: str) -> tuple[dict[str, Any], Any]:
    """A service-account JSON document (as Google issues it) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "etl-test", "private_key_id": "k1",
            "private_key": pem, "client_email": "etl@etl-test.iam.gserviceaccount.com",
            "client_id": "123", "token_uri": token_uri}
    return info, key.public_key()


def _col(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _parse(a1: str) -> tuple[str, int, int, int | None, int | None]:
    """``Sheet1!B2:D9`` -> sheet, first row (0-based), first col, last row, last col."""
    sheet, _, cells = a1.partition("!")
    if not cells:
        return sheet, 0, 0, None, None
    first, _, last = cells.partition(":")
    m1, m2 = _CELL.match(first.upper()), _CELL.match((last or first).upper())
    assert m1 and m2, a1
    r1 = int(m1.group(2)) - 1 if m1.group(2) else 0
    c1 = _col(m1.group(1)) if m1.group(1) else 0
    r2 = int(m2.group(2)) - 1 if m2.group(2) else None
    c2 = _col(m2.group(1)) if m2.group(1) else None
    return sheet, r1, c1, r2, c2


def make_app(public_key: Any, client_email: str, sheets: dict[str, list[list[Any]]], *,
             quota_every: int = 0) -> web.Application:
    app = web.Application()
    app["sheets"] = sheets
    app["tokens"] = {}
    app["token_requests"] = 0
    app["faults"] = Faults(0.0)
    app["requests"] = 0
    app["quota_errors"] = 0

    async def token(request: web.Request) -> web.Response:
        app["token_requests"] += 1
        form = await request.post()
        if form.get("grant_type") != GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(str(form.get("assertion")), public_key, algorithms=["RS256"],
                                audience=str(request.url), issuer=client_email,
                                options={"require": ["iss", "aud", "iat", "exp", "scope"]})
        except jwt.InvalidSignatureError:
            return web.json_response({"error": "invalid_grant",
                                      "error_description": "Invalid JWT Signature."}, status=400)
        except jwt.PyJWTError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)},
                                     status=400)
        if claims["exp"] - claims["iat"] > 3600:
            return web.json_response({"error": "invalid_grant",
                                      "error_description": "Invalid JWT: expiry too far"},
                                     status=400)
        value = f"ya29.fake-{app['token_requests']}"
        app["tokens"][value] = claims["scope"].split()
        return web.json_response({"access_token": value, "expires_in": 3599,
                                  "token_type": "Bearer"})

    def check(request: web.Request, write: bool) -> web.Response | None:
        app["requests"] += 1
        scopes = app["tokens"].get(request.headers.get("Authorization", "")[7:])
        if scopes is None:
            return web.json_response({"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                "message": "Request had invalid authentication "
                                                           "credentials."}}, status=401)
        if write and "https://www.googleapis.com/auth/spreadsheets" not in scopes:
            return web.json_response({"error": {"code": 403, "status": "PERMISSION_DENIED",
                                                "message": "Request had insufficient "
                                                           "authentication scopes."}}, status=403)
        if quota_every and app["requests"] % quota_every == 0:
            app["quota_errors"] += 1
            return web.json_response({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                                "message": "Quota exceeded for quota metric "
                                                           "'Read requests' and limit 'Read "
                                                           "requests per minute per user'"}},
                                     status=429)
        return None

    def render(value: Any, option: str) -> Any:
        if isinstance(value, dict):  # {"formula": "=A1*2", "value": 4}
            return value["formula"] if option == "FORMULA" else render(value["value"], option)
        if option == "FORMATTED_VALUE":
            if isinstance(value, float):
                return f"{value:,.2f}"
            return "" if value is None else str(value)
        return "" if value is None else value

    async def get(request: web.Request) -> web.Response:
        refused = check(request, False)
        if refused is not None:
            return refused
        a1 = request.match_info["range"]
        sheet, r1, c1, r2, c2 = _parse(a1)
        grid = app["sheets"].get(sheet)
        if grid is None:
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                "message": f"Unable to parse range: {a1}"}},
                                     status=400)
        option = request.query.get("valueRenderOption", "FORMATTED_VALUE")
        rows = []
        for row in grid[r1:None if r2 is None else r2 + 1]:
            cells = [render(v, option) for v in row[c1:None if c2 is None else c2 + 1]]
            while cells and cells[-1] == "":
                cells.pop()  # trailing empty cells are omitted
            rows.append(cells)
        while rows and not rows[-1]:
            rows.pop()  # trailing empty rows are omitted
        body: dict[str, Any] = {"range": a1, "majorDimension": "ROWS"}
        if rows:
            body["values"] = rows
        return web.json_response(body)

    def put(sheet: str, r1: int, c1: int, values: list[list[Any]]) -> int:
        grid = app["sheets"].setdefault(sheet, [])
        for i, row in enumerate(values):
            while len(grid) <= r1 + i:
                grid.append([])
            target = grid[r1 + i]
            while len(target) < c1 + len(row):
                target.append(None)
            target[c1:c1 + len(row)] = [None if v == "" else v for v in row]
        return len(values)

    async def update(request: web.Request) -> web.Response:
        refused = check(request, True)
        if refused is not None:
            return refused
        sheet, r1, c1, _, _ = _parse(request.match_info["range"])
        values = (await request.json())["values"]
        n = put(sheet, r1, c1, values)
        return web.json_response({"spreadsheetId": request.match_info["id"], "updatedRows": n,
                                  "updatedRange": request.match_info["range"]})

    async def action(request: web.Request) -> web.Response:
        refused = check(request, True)
        if refused is not None:
            return refused
        a1, verb = request.match_info["range"], request.match_info["verb"]
        sheet = a1.partition("!")[0]
        if verb == "clear":
            app["sheets"][sheet] = []
            return web.json_response({"spreadsheetId": request.match_info["id"],
                                      "clearedRange": a1})
        values = (await request.json())["values"]
        grid = app["sheets"].setdefault(sheet, [])
        last = max((i for i, r in enumerate(grid) if any(v is not None for v in r)), default=-1)
        n = put(sheet, last + 1, 0, values)
        return web.json_response({"spreadsheetId": request.match_info["id"],
                                  "updates": {"updatedRows": n}})

    async def batch_update(request: web.Request) -> web.Response:
        refused = check(request, True)
        if refused is not None:
            return refused
        body = await request.json()
        total = 0
        for item in body["data"]:
            sheet, r1, c1, _, _ = _parse(item["range"])
            total += put(sheet, r1, c1, item["values"])
        return web.json_response({"spreadsheetId": request.match_info["id"],
                                  "totalUpdatedRows": total})

    app.router.add_post("/token", token)
    app.router.add_get("/v4/spreadsheets/{id}/values/{range}", get)
    app.router.add_put("/v4/spreadsheets/{id}/values/{range}", update)
    app.router.add_post("/v4/spreadsheets/{id}/values:batchUpdate", batch_update)
    app.router.add_post("/v4/spreadsheets/{id}/values/{range}:{verb}", action)
    return app

