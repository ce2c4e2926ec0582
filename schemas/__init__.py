"""All table schemas, declared once. Import tables from here: ``from schemas import MESSAGES``."""

from schemas.core import Column, Table
from schemas.corpus import ANON, DEDUP, EXAMPLES, HISTORIES, RECORDS, TIMELINE
from schemas.messages import MESSAGES, QUARANTINE, QUARANTINE_REASONS
from schemas.shards import SHARD, SHARD_SCHEMA_VERSION

ALL_TABLES = (MESSAGES, QUARANTINE, RECORDS, ANON, DEDUP, TIMELINE, HISTORIES, EXAMPLES, SHARD)

__all__ = [
    "Column", "Table", "MESSAGES", "QUARANTINE", "QUARANTINE_REASONS", "RECORDS", "ANON", "DEDUP",
    "TIMELINE", "HISTORIES", "EXAMPLES", "SHARD", "SHARD_SCHEMA_VERSION", "ALL_TABLES",
]
