"""Authentication of HTTP requests: bearer, API key, basic, OAuth 2.0 and signed-JWT grants.

Token grants cache their access token and renew it ``refresh_before`` seconds before it
expires (one renewal at a time, however many requests wait), and once more when the API
answers 401 to a token it gave out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

from etlsync.connectors.http import config as cfg
from etlsync.connectors.http.secrets import mask, resolve_secret
from etlsync.core.errors import ConfigError
from etlsync.resilience import PermanentError, TransientError

Post = Callable[[str, dict[str, str], dict[str, str]], Any]
"""``await post(url, form, headers) -> (status, json_body)`` (the client's token request)."""


class Authenticator:
    """Adds credentials to a request's headers and query parameters."""

    async def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Add the credentials (may fetch a token)."""

    def invalidate(self) -> None:
        """The API refused the credentials: fetch a new token on the next request."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"


class StaticAuth(Authenticator):
    def __init__(self, headers: dict[str, str], params: dict[str, str]) -> None:
        self._headers, self._params = headers, params

    async def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        headers.update(self._headers)
        params.update(self._params)


class TokenAuth(Authenticator):
    """A cached access token from a token endpoint."""

    def __init__(self, post: Post, refresh_before: float, default_expiry: float) -> None:
        self._post = post
        self._refresh_before = refresh_before
        self._default_expiry = default_expiry
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0

    async def _request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        raise NotImplementedError

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires - self._refresh_before:
                url, form, headers = await self._request()
                status, body = await self._post(url, form, headers)
                if status >= 500 or status == 429:
                    raise TransientError(f"token endpoint answered {status}")
                if status != 200 or not isinstance(body, dict) or "access_token" not in body:
                    err = body.get("error_description") or body.get("error") \
                        if isinstance(body, dict) else None
                    raise PermanentError(mask(f"token endpoint {url} refused the grant "
                                              f"({status}): {err or 'no access_token'}"))
                self._token = str(body["access_token"])
                from etlsync.connectors.http.secrets import REDACTOR

                REDACTOR.add(self._token)
                expires_in = float(body.get("expires_in") or self._default_expiry)
                self._expires = time.monotonic() + expires_in
                self.fetched += 1
            return self._token

    async def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        headers["Authorization"] = f"Bearer {await self.token()}"

    def invalidate(self) -> None:
        self._token = None


class ClientCredentialsAuth(TokenAuth):
    def __init__(self, spec: cfg.OAuth2ClientCredentials, post: Post, where: str) -> None:
        super().__init__(post, spec.refresh_before, spec.default_token_expiration)
        self.spec = spec
        self.client_id = resolve_secret(spec.client_id, f"{where}.client_id") or ""
        self.client_secret = resolve_secret(spec.client_secret, f"{where}.client_secret") or ""
        self.refresh_token = resolve_secret(spec.refresh_token, f"{where}.refresh_token")
        if isinstance(spec, cfg.OAuth2Refresh) and not self.refresh_token:
            raise ConfigError(f"{where}.refresh_token: required by oauth2_refresh_token")

    async def _request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        spec = self.spec
        form: dict[str, str] = dict(spec.access_token_request_data)
        if self.refresh_token:
            form.update(grant_type="refresh_token", refresh_token=self.refresh_token)
        else:
            form["grant_type"] = "client_credentials"
        if spec.scope:
            form["scope"] = spec.scope
        headers: dict[str, str] = {}
        if spec.client_auth == "basic":
            raw = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        return spec.access_token_url, form, headers


class JwtGrantAuth(TokenAuth):
    """RFC 7523 section 2.1: a JWT signed with the service account's key, exchanged for an
    access token (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``)."""

    GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

    def __init__(self, spec: cfg.JwtBearerAuth, post: Post, where: str) -> None:
        super().__init__(post, spec.refresh_before, spec.lifetime)
        self.spec = spec
        info: dict[str, Any] = {}
        raw = resolve_secret(spec.credentials, f"{where}.credentials")
        if raw:
            text = raw
            if not raw.lstrip().startswith("{"):
                try:
                    with open(raw) as f:
                        text = f.read()
                except OSError as exc:
                    raise ConfigError(f"{where}.credentials: cannot read {raw!r}: "
                                      f"{exc.strerror}") from None
            try:
                info = json.loads(text)
            except ValueError:
                raise ConfigError(f"{where}.credentials: not a service-account JSON "
                                  "document") from None
        self.issuer = spec.issuer or info.get("client_email")
        self.key = resolve_secret(spec.private_key, f"{where}.private_key") or \
            info.get("private_key")
        self.key_id = spec.private_key_id or info.get("private_key_id")
        self.url = spec.access_token_url or info.get("token_uri")
        for name, value in (("issuer", self.issuer), ("private_key", self.key),
                            ("access_token_url", self.url)):
            if not value:
                raise ConfigError(f"{where}.{name}: required (or a credentials file holding it)")
        from etlsync.connectors.http.secrets import REDACTOR

        REDACTOR.add(str(self.key))

    async def _request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        import jwt

        now = int(time.time())
        spec = self.spec
        claims: dict[str, Any] = {"iss": self.issuer, "aud": spec.audience or self.url,
                                  "iat": now, "exp": now + int(spec.lifetime)}
        if spec.scope:
            claims["scope"] = spec.scope
        if spec.subject:
            claims["sub"] = spec.subject
        headers = {"kid": self.key_id} if self.key_id else None
        assertion = jwt.encode(claims, str(self.key), algorithm=spec.algorithm, headers=headers)
        assert self.url is not None
        return self.url, {"grant_type": self.GRANT, "assertion": assertion}, {}


def make_auth(spec: cfg.Auth | None, post: Post, where: str) -> Authenticator:
    """The authenticator for ``spec`` (secrets resolved now; tokens on first use)."""
    if spec is None:
        return Authenticator()
    if isinstance(spec, cfg.BearerAuth):
        token = resolve_secret(spec.token, f"{where}.token")
        return StaticAuth({"Authorization": f"Bearer {token}"}, {})
    if isinstance(spec, cfg.ApiKeyAuth):
        key = resolve_secret(spec.api_key, f"{where}.api_key") or ""
        if spec.location == "query":
            return StaticAuth({}, {spec.name: key})
        return StaticAuth({spec.name: key}, {})
    if isinstance(spec, cfg.BasicAuth):
        user = resolve_secret(spec.username, f"{where}.username") or ""
        password = resolve_secret(spec.password, f"{where}.password") or ""
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return StaticAuth({"Authorization": f"Basic {raw}"}, {})
    if isinstance(spec, cfg.OAuth2ClientCredentials):
        return ClientCredentialsAuth(spec, post, where)
    return JwtGrantAuth(spec, post, where)
