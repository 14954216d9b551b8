"""Fixtures of the HTTP connector tests: the fakes are plain aiohttp apps (tests/http/fakes)."""

from __future__ import annotations

import warnings

from aiohttp.web import NotAppKeyWarning

warnings.filterwarnings("ignore", category=NotAppKeyWarning)
