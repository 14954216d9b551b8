"""RoutingSink: one child sink per stream, opened lazily, closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from etlsync import Batch, Pipeline, RoutingSink, Source
from etlsync.testing import CollectingSink


class TwoStreams(Source):
    async def read(self, position: Any) -> AsyncIterator[Batch]:
        for i in range(6):
            stream = "public.a" if i % 2 else "public.b"
            yield Batch([{"i": i}], stream=stream, position=i + 1)


async def test_batches_reach_the_sink_of_their_stream_in_order() -> None:
    made: dict[str, CollectingSink] = {}

    def make(stream: str) -> CollectingSink:
        made[stream] = CollectingSink(stream)
        return made[stream]

    summary = await Pipeline(TwoStreams(), [], RoutingSink(make)).run()
    assert set(made) == {"public.a", "public.b"}
    assert [r["i"] for r in made["public.a"].rows] == [1, 3, 5]
    assert [r["i"] for r in made["public.b"].rows] == [0, 2, 4]
    assert all(s.opened and s.closed for s in made.values())
    assert made["public.a"].context.pipeline == "pipeline"
    assert summary.committed_position == 6
