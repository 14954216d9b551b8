"""MongoOplogSource: CDC by tailing ``local.oplog.rs``, for deployments that expose the
oplog but not change streams; same options, rows and snapshot handover as the
change-stream source."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from etlsync.connectors.mongo.cdc import CdcSource, EventBatcher, HistoryLostSignal
from etlsync.connectors.mongo.convert import convert_value, to_json, ts_from_list, ts_to_list
from etlsync.core.batch import Batch, Op

_Item = tuple[str, str, str, Any, Any, Any, Any]
"""(db, coll, op letter, document or None, key document, position, meta)."""


class MongoOplogSource(CdcSource):
    """Change data from a tailable cursor on ``local.oplog.rs`` (same interface as
    :class:`MongoChangeStreamSource`; see it for the options).

    Updates stored as diffs are completed by looking the document up by ``_id`` (like
    ``updateLookup``); replacements carry the document. Transactions (``applyOps``) are
    expanded. The position is ``{"ts": [seconds, increment], "n": k}``: the timestamp of
    the last entry read and how many entries at that timestamp were delivered (entries of
    one transaction may share it). Resuming checks that the entry at ``ts`` still exists;
    if the oplog rolled past it, the history is lost (see ``on_history_lost``). Needs read
    access to the ``local`` database.
    """

    kind = "oplog"

    def __init__(self, connection: Any = None, *, name: str = "mongo_oplog",
                 **options: Any) -> None:
        super().__init__(connection, name=name, **options)
        self._cur: list[Any] = [None, 0]

    def _query(self) -> dict[str, Any]:
        if self.collections:
            nss = [".".join(self.split(c)) for c in self.collections]
            return {"$or": [{"ns": {"$in": nss}}, {"op": "c"}]}
        if self.database is not None:
            return {"$or": [{"ns": {"$regex": f"^{re.escape(self.database)}\\."}}, {"op": "c"}]}
        return {}

    def _oplog(self, client: Any) -> Any:
        return client["local"]["oplog.rs"]

    async def capture(self, client: Any) -> Any:
        last = await self._oplog(client).find_one(sort=[("$natural", -1)])
        if last is None:
            return {"ts": [0, 0], "n": 0}
        ts = last["ts"]
        n = await self._oplog(client).count_documents({"ts": ts, **self._query()})
        return {"ts": ts_to_list(ts), "n": n}

    async def _exists(self, client: Any, resume: Mapping[str, Any]) -> bool:
        ts = ts_from_list(resume["ts"])
        if ts is None or (ts.time == 0 and ts.inc == 0):
            return True
        return await self._oplog(client).find_one({"ts": ts}, {"ts": 1}) is not None

    async def stream(self, client: Any, resume: Any) -> AsyncIterator[Batch]:
        from pymongo import CursorType

        batcher = EventBatcher(self.batch_size)
        batcher.resume = batcher.emitted = self.stream_pos(resume)
        self._cur = [ts_from_list(resume["ts"]), int(resume["n"])]
        last_event = time.monotonic()
        while True:
            start_ts = self._cur[0]
            query = {"ts": {"$gte": start_ts}, **self._query()}
            # The tail cursor opens first; a plain read then catches up to "now". Entries
            # both return are skipped by position, so a server whose tail cursor misses
            # writes made while it opens loses nothing.
            tail = self._oplog(client).find(
                query, cursor_type=CursorType.TAILABLE_AWAIT, oplog_replay=True,
                batch_size=self.batch_size).max_await_time_ms(self.max_await_ms)
            try:
                pending: list[Any] = await tail.to_list(self.batch_size)  # opens it
                plain = self._oplog(client).find(query, batch_size=self.batch_size)
                checked = False
                try:
                    counter: list[Any] = [None, 0]
                    while True:
                        entries = await plain.to_list(self.batch_size)
                        if not checked:
                            if not await self._exists(client, {"ts": ts_to_list(start_ts)}):
                                raise HistoryLostSignal(f"oplog entry {start_ts} is gone")
                            checked = True
                        if not entries:
                            break
                        last_event = time.monotonic()
                        for out in await self._process(client, entries, counter, batcher):
                            yield out
                finally:
                    await plain.close()
                counter = [None, 0]
                while True:
                    if pending:
                        entries, pending = pending, []
                    else:
                        entries = await tail.to_list(self.batch_size)
                    if not entries:
                        beat = batcher.idle(None, self.heartbeat_seconds)
                        if beat is not None:
                            yield beat
                        if self.since_idle(last_event):
                            return
                        if not tail.alive:
                            break
                        continue
                    if await self._accepts_any(entries, counter):
                        last_event = time.monotonic()
                    for out in await self._process(client, entries, counter, batcher):
                        yield out
            finally:
                await tail.close()

    async def _accepts_any(self, entries: list[Any], counter: list[Any]) -> bool:
        ts, k = counter
        cur_ts, cur_n = self._cur
        for e in entries:
            ets = e["ts"]
            k = k + 1 if ets == ts else 1
            ts = ets
            if ets > cur_ts or (ets == cur_ts and k > cur_n):
                return True
        return False

    async def _process(self, client: Any, entries: list[Any], counter: list[Any],
                       batcher: EventBatcher) -> list[Batch]:
        """Skip entries at or before the current position (``counter`` numbers entries
        per timestamp as this cursor returns them); expand, look up and batch the rest."""
        items: list[_Item] = []
        cur_ts, cur_n = self._cur
        for e in entries:
            ts = e["ts"]
            counter[1] = counter[1] + 1 if ts == counter[0] else 1
            counter[0] = ts
            k = counter[1]
            if ts < cur_ts or (ts == cur_ts and k <= cur_n):
                continue  # delivered already
            cur_ts, cur_n = ts, k
            pos = self.stream_pos({"ts": ts_to_list(ts), "n": k})
            self._expand(e, pos, items)
        self._cur = [cur_ts, cur_n]
        await self._lookup(client, items)
        out = self._emit(items, batcher)
        batcher.resume = self.stream_pos({"ts": ts_to_list(cur_ts), "n": cur_n})
        return out

    def _expand(self, e: Mapping[str, Any], pos: Any, items: list[_Item]) -> None:
        op, ns = e.get("op"), e.get("ns", "")
        db, _, coll = ns.partition(".")
        meta = {"ts": e.get("ts")} if self.metadata else None
        if op == "c":
            o = e.get("o") or {}
            if "applyOps" in o:
                subs = list(o["applyOps"])
                for i, sub in enumerate(subs):
                    sub = dict(sub)
                    sub.setdefault("ts", e.get("ts"))
                    self._expand(sub, pos if i == len(subs) - 1 else None, items)
                return
            if "drop" in o and self.watches(db, o["drop"]):
                items.append((db, str(o["drop"]), "drop", None, None, pos, meta))
            elif "dropDatabase" in o and self.watches(db, None):
                items.append((db, "", "dropDatabase", None, None, pos, meta))
            elif "renameCollection" in o:
                sdb, _, scoll = str(o["renameCollection"]).partition(".")
                if self.watches(sdb, scoll):
                    items.append((sdb, scoll, "rename", None, None, pos, meta))
            return
        if op not in ("i", "u", "d") or not coll or not self.watches(db, coll):
            items.append(("", "", "skip", None, None, pos, None))
            return
        o = e.get("o") or {}
        if op == "i":
            items.append((db, coll, "i", o, {"_id": o.get("_id")}, pos, meta))
        elif op == "d":
            items.append((db, coll, "d", None, dict(o), pos, meta))
        else:
            key = dict(e.get("o2") or {})
            replacement = "diff" not in o and not any(k.startswith("$") for k in o)
            if meta is not None and not replacement:
                meta["updated"] = to_json(o.get("diff", o))
            doc = dict(o, _id=key.get("_id")) if replacement else None
            items.append((db, coll, "u", doc, key, pos, meta))

    async def _lookup(self, client: Any, items: list[_Item]) -> None:
        """Fill in the current document of diff-style updates, one query per collection."""
        wanted: dict[tuple[str, str], list[Any]] = {}
        for db, coll, op, doc, key, _, _ in items:
            if op == "u" and doc is None:
                wanted.setdefault((db, coll), []).append(key["_id"])
        if not wanted:
            return
        found: dict[tuple[str, str], dict[bytes, Any]] = {}
        from etlsync.connectors.mongo.convert import encode_value

        for (db, coll), ids in wanted.items():
            docs = await client[db][coll].find({"_id": {"$in": ids}}).to_list(None)
            found[(db, coll)] = {encode_value(d["_id"]): d for d in docs}
        for i, (db, coll, op, doc, key, pos, meta) in enumerate(items):
            if op == "u" and doc is None:
                current = found[(db, coll)].get(encode_value(key["_id"]))
                items[i] = (db, coll, op, current, key, pos, meta)

    def _emit(self, items: list[_Item], batcher: EventBatcher) -> list[Batch]:
        out: list[Batch] = []
        for db, coll, op, doc, key, pos, meta in items:
            if op in ("drop", "dropDatabase", "rename"):
                if batcher.rows:
                    out.append(batcher.flush())
                if op == "dropDatabase":
                    streams = sorted(s for s in self._seen_streams
                                     if self.single_db or s.startswith(f"{db}."))
                    what = f"database {db!r} was dropped"
                else:
                    streams = [self.stream_of(db, coll)]
                    verb = "renamed" if op == "rename" else "dropped"
                    what = f"collection {db}.{coll} was {verb}"
                out.extend(self.dropped(what, streams, pos))
                batcher.emitted = pos
                batcher.resume = pos
                continue
            if op == "skip" or (op == "u" and doc is None):
                if pos is not None:
                    batcher.resume = pos
                continue
            stream = self.stream_of(db, coll)
            self._seen_streams.add(stream)
            if op == "d":
                row = {k: convert_value(v) for k, v in key.items()}
                if meta is not None:
                    row.update(self.row_of({}, Op.DELETE, meta))
                kind = Op.DELETE
            else:
                kind = Op.INSERT if op == "i" else Op.UPDATE
                row = self.row_of(doc, kind, meta)
            done = batcher.add(stream, kind, row, pos if pos is not None else None)
            if done is not None:
                out.append(done)
            if batcher.full() and pos is not None:
                out.append(batcher.flush())
        return out
