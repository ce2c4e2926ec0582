"""All table schemas, declared once. Import tables from here: ``from schemas import MESSAGES``."""

from schemas.core import Column, Table
from schemas.corpus import ANON, DEDUP, EXAMPLES, HISTORIES, RECORDS, TIMELINE
from schemas.messages import MESSAGES, QUARANTINE, QUARANTINE_REASONS
from schemas.shards import SHARD, SHARD_REF, SHARD_SCHEMA_VERSION, TOKEN_STORE

ALL_TABLES = (MESSAGES, QUARANTINE, RECORDS, ANON, DEDUP, TIMELINE, HISTORIES, EXAMPLES, SHARD, TOKEN_STORE, SHARD_REF)

__all__ = [
    "Column", "Table", "MESSAGES", "QUARANTINE", "QUARANTINE_REASONS", "RECORDS", "ANON", "DEDUP",
    "TIMELINE", "HISTORIES", "EXAMPLES", "SHARD", "SHARD_REF", "TOKEN_STORE", "SHARD_SCHEMA_VERSION", "ALL_TABLES",
]
