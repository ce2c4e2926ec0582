"""Which input files form which partition of a source: one layout for the CLI and Dagster.

* Reddit: monthly partitions (``YYYY-MM``), as Pushshift/Arctic Shift publish dumps. A
  file's month comes from its name (``RC_2005-12.zst``, ``RS_2024-02.zst``); a file whose
  name carries no month (an ad-hoc export) is filed under the month of its first record,
  so it still lands in exactly one partition; a file with neither (empty, corrupt, garbage)
  is filed under ``UNDATED_MONTH`` (2005-06), where ingest quarantines it. A month is written to
  ``messages_raw/<source>/<YYYY-MM>`` and ``quarantine/<source>/<YYYY-MM>``, so re-running
  it replaces exactly that month and leaves the others untouched.
* Every other format: one partition per configured source, written to
  ``messages_raw/<source>`` and ``quarantine/<source>``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import orjson
import zstandard

from pipelines.core.config import SourceConfig
from pipelines.sources.base import open_binary
from pipelines.sources.reddit import epoch_micros

MONTHLY_FORMATS = ("reddit",)
MONTH_IN_NAME = re.compile(r"R[CS]_(\d{4})-(\d{2})")
MAX_PEEK_BYTES = 1 << 20
# Where a file goes whose name has no month and whose first MiB holds no record with a readable
# time (an empty, corrupt or garbage dump): Reddit's first month, the first Dagster partition.
# Ingest then quarantines the file there (`empty_file`, `corrupt`, `truncated`, …), so `build`
# and `ingest` agree on it instead of the partitioning stopping the whole build.
UNDATED_MONTH = "2005-06"


class PartitionError(ValueError):
    """A dump file cannot be assigned to a partition; the message names the file and the fix."""


def _peek(path: str) -> bytes:
    """Up to MAX_PEEK_BYTES of the file's (decompressed) start; as much as decodes for a broken `.zst`."""
    with open_binary(path) as raw:
        if not path.endswith(".zst"):
            return raw.read(MAX_PEEK_BYTES)
        # Pushshift frames declare a 2 GiB window; only the start is decoded.
        out = b""
        try:
            with zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw) as stream:
                while len(out) < MAX_PEEK_BYTES and (chunk := stream.read(MAX_PEEK_BYTES - len(out))):
                    out += chunk
        except zstandard.ZstdError:
            pass  # corrupt or cut short: what decoded so far is all there is
        return out


def _first_record_month(path: str) -> str | None:
    """Month of the first line in the file's first MiB whose `created_utc` the reader accepts."""
    for line in _peek(path).split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        micros = epoch_micros(obj.get("created_utc")) if isinstance(obj, dict) else None
        if micros is not None:
            month = datetime.fromtimestamp(micros // 1_000_000, tz=timezone.utc).strftime("%Y-%m")
            return max(month, UNDATED_MONTH)  # 2005-01..05 are valid times but precede the partitions
    return None


def month_of_file(path: str) -> str:
    """``YYYY-MM`` of a Reddit dump file: from its name, else from its first readable record's
    ``created_utc``, else ``UNDATED_MONTH``.

    Never raises for a file's content (an empty or corrupt file still has a partition, where
    ingest quarantines it); raises SourceError naming the file if it cannot be opened.
    """
    m = MONTH_IN_NAME.search(path.rsplit("/", 1)[-1])
    # A name like RC_2024-13 or RC_1999-01 names no partition: the records decide instead.
    if m and "01" <= m.group(2) <= "12" and f"{m.group(1)}-{m.group(2)}" >= UNDATED_MONTH:
        return f"{m.group(1)}-{m.group(2)}"
    return _first_record_month(path) or UNDATED_MONTH


def files_by_month(source: SourceConfig) -> dict[str, list[str]]:
    """The source's files grouped by month, each list sorted."""
    from pipelines.sources.base import expand_paths

    out: dict[str, list[str]] = {}
    for p in expand_paths(source.paths):
        out.setdefault(month_of_file(p), []).append(p)
    return {k: sorted(v) for k, v in sorted(out.items())}


def merge_summaries(per: list[dict], **head) -> dict:
    """One ingest summary from several (per source or per month): counts and reasons summed."""
    total = dict(head)
    for k in ("records", "messages", "quarantined", "skipped", "files"):
        total[k] = sum(p[k] for p in per)
    for k in ("skipped_by_reason", "quarantined_by_reason"):
        merged: dict[str, int] = {}
        for p in per:
            for r, n in p[k].items():
                merged[r] = merged.get(r, 0) + n
        total[k] = dict(sorted(merged.items()))
    return total
