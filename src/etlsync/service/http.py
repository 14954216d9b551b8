"""The HTTP API of ``etlsync serve`` (aiohttp), bound to 127.0.0.1 unless told otherwise.

Every endpoint but ``GET /healthz`` needs ``Authorization: Bearer <token>``, the token read
from ``http.token_env`` (default ``ETLSYNC_SERVE_TOKEN``) or ``http.token_file``; without a
token the API does not start. Endpoints: ``POST /jobs/{name}/runs`` (``{"params": {...},
"priority": n}``; an ``Idempotency-Key`` header makes one run per key), ``GET /jobs``,
``GET /runs``, ``GET /runs/{id}``, ``POST /runs/{id}/cancel``, ``GET /healthz``
(docs/serve.md).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from aiohttp import web

from etlsync.core.errors import ConfigError
from etlsync.service.secrets import secret

if TYPE_CHECKING:
    from etlsync.service.service import Service


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"http.listen: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class HttpApi:
    def __init__(self, service: Service) -> None:
        spec = service.project.spec.http
        assert spec is not None
        self.service = service
        self.host, self.port = parse_listen(spec.listen)
        self.token = secret(spec.token_env, spec.token_file, "http.token_env",
                            service.project.root)
        if len(self.token) < 16:
            raise ConfigError("http: the API token must be at least 16 characters")
        service.redact.add(self.token)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.add_routes([
            web.get("/healthz", self._health),
            web.post("/jobs/{name}/runs", self._trigger),
            web.get("/jobs", self._jobs),
            web.get("/runs", self._runs),
            web.get("/runs/{id}", self._run),
            web.post("/runs/{id}/cancel", self._cancel),
        ])
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(),
                                                                     self.token.encode()):
                return web.json_response({"error": "unauthorized"}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        response: web.StreamResponse = await handler(request)
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "instance": self.service.instance_id})

    async def _trigger(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.service.project.jobs:
            return web.json_response({"error": f"no job {name!r}"}, status=404)
        body: Any = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
            return web.json_response({"error": "expected {\"params\": {...}}"}, status=400)
        priority = body.get("priority")
        if priority is not None and not isinstance(priority, int):
            return web.json_response({"error": "priority: expected an integer"}, status=400)
        key = request.headers.get("Idempotency-Key")
        dedupe = f"http:{name}:{key}" if key else None
        run = await self.service.trigger(name, params=body.get("params", {}), trigger="http",
                                         priority=priority, dedupe=dedupe)
        if run is None:
            found = await self.service.store.run_by_dedupe(dedupe) if dedupe else None
            return web.json_response({"run": None if found is None else found.to_dict(),
                                      "duplicate": True}, status=200)
        return web.json_response({"run": run.to_dict()}, status=202)

    async def _jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": [j.to_dict() for j in self.service.jobs()]})

    async def _runs(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            return web.json_response({"error": "limit: expected an integer"}, status=400)
        status = [s for s in q.get("status", "").split(",") if s]
        runs = await self.service.runs(job=q.get("job"), status=status, limit=min(limit, 1000))
        return web.json_response({"runs": [r.to_dict() for r in runs]})

    async def _run(self, request: web.Request) -> web.Response:
        run = await self.service.run(request.match_info["id"])
        if run is None:
            return web.json_response({"error": "no such run"}, status=404)
        lines = await self.service.logs(run.id)
        return web.json_response({"run": run.to_dict(), "logs": [x.to_dict() for x in lines]})

    async def _cancel(self, request: web.Request) -> web.Response:
        ok = await self.service.cancel(request.match_info["id"])
        return web.json_response({"cancelled": ok}, status=200 if ok else 409)
