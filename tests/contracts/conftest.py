"""Fixtures of the contract suite: ``sink`` and ``source`` run every test once per connector
factory of ``tests/contracts/connectors.py``; a factory's service fixtures are requested only
by its own tests (which carry the ``integration`` marker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etlsync.core.batch import Row
from etlsync.core.stages import Sink
from tests.contracts.connectors import (
    CDC_SOURCES,
    SINKS,
    SOURCES,
    SinkFactory,
    SinkTarget,
    SourceFactory,
    SourceOrigin,
)
from tests.contracts.harness import build_target_sink, choices, stage_type


def _params(factories: tuple[SinkFactory, ...] | tuple[SourceFactory, ...]) -> list[object]:
    return [pytest.param(f, id=f.id, marks=[pytest.mark.integration] if f.fixtures else [])
            for f in factories]


@dataclass
class SinkCase:
    """One sink type and a fresh target of it (``table``: the test's own table name)."""

    factory: SinkFactory
    target: SinkTarget
    tmp: Path
    table: str

    def build(self, table: str | None = None, **options: Any) -> Sink:
        """The sink a job's ``sink:`` section with ``options`` builds (``write_mode:
        append`` is left out for a sink that has no write modes: it appends)."""
        if options.get("write_mode") == "append" and \
                not choices("sink", self.factory.type, "write_mode"):
            del options["write_mode"]
        return build_target_sink(self.target, self.factory, table or self.table, self.tmp,
                                 **options)

    async def rows(self, table: str | None = None) -> list[Row] | None:
        return await self.target.rows(table or self.table)

    def takes(self, option: str) -> bool:
        """The sink type has ``option``."""
        return option in stage_type("sink", self.factory.type).options.__struct_fields__

    def can(self, option: str, value: str) -> bool:
        """The manifest lets this sink type take ``option: value``."""
        if option == "write_mode" and not choices("sink", self.factory.type, option):
            return value == "append"  # a sink without write modes appends
        return value in choices("sink", self.factory.type, option)


@dataclass
class SourceCase:
    factory: SourceFactory
    origin: SourceOrigin
    tmp: Path


@pytest.fixture(params=_params(SINKS))
async def sink(request: pytest.FixtureRequest, unique_name: str, tmp_path: Path
               ) -> AsyncIterator[SinkCase]:
    factory: SinkFactory = request.param
    reason = factory.xfail.get(request.node.originalname)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    env = {f: request.getfixturevalue(f) for f in factory.fixtures}
    target = factory.target(unique_name, tmp_path, env)
    try:
        yield SinkCase(factory, target, tmp_path, unique_name)
    finally:
        await target.cleanup()


@pytest.fixture(params=_params(SOURCES))
async def source(request: pytest.FixtureRequest, unique_name: str, tmp_path: Path
                 ) -> AsyncIterator[SourceCase]:
    async for case in _source_case(request, unique_name, tmp_path):
        yield case


@pytest.fixture(params=_params(CDC_SOURCES))
async def cdc_source(request: pytest.FixtureRequest, unique_name: str, tmp_path: Path
                     ) -> AsyncIterator[SourceCase]:
    async for case in _source_case(request, unique_name, tmp_path):
        yield case


async def _source_case(request: pytest.FixtureRequest, unique_name: str, tmp_path: Path
                       ) -> AsyncIterator[SourceCase]:
    factory: SourceFactory = request.param
    env = {f: request.getfixturevalue(f) for f in factory.fixtures}
    origin = factory.origin(unique_name, tmp_path, env)
    try:
        yield SourceCase(factory, origin, tmp_path)
    finally:
        await origin.cleanup()
