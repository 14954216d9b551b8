"""The PostgreSQL streaming replication client behind :class:`PostgresCdcSource`: protocol
(auth, TLS, CopyBoth), pgoutput decoder, type decoders, slot/publication management and
chunked snapshot reads."""

from etlsync.connectors.postgres.replication.conninfo import ConnParams, parse_dsn
from etlsync.connectors.postgres.replication.pgoutput import PgOutputDecoder, Relation
from etlsync.connectors.postgres.replication.protocol import (
    PgServerError,
    ReplicationConnection,
    format_lsn,
    parse_lsn,
)
from etlsync.connectors.postgres.replication.slots import drop_slot, slot_info, wal_retained

__all__ = [
    "ConnParams",
    "PgOutputDecoder",
    "PgServerError",
    "Relation",
    "ReplicationConnection",
    "drop_slot",
    "format_lsn",
    "parse_dsn",
    "parse_lsn",
    "slot_info",
    "wal_retained",
]
