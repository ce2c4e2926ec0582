"""Tables on fsspec storage: each table a Parquet dataset directory ``OUT/<table>/``.

Writes are atomic per directory: files go to a temporary sibling ``<table>.tmp-<token>``
first and the finished directory replaces the old one by two renames (old table to
``<table>.old-<token>``, temporary to ``<table>``; same token), so a re-run replaces
exactly what it rewrites (a partition, a table). A crash between the two renames leaves
no live table; :func:`recover` (run by whoever takes the output lock, pipelines/core/lock.py)
puts the old table back and removes what killed runs left. The rule is in
docs/failure-model.md.
"""

from __future__ import annotations

import logging
import posixpath
import re
import uuid
from typing import Callable, Iterable

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 65_536
PARQUET_OPTIONS = dict(compression="zstd", use_dictionary=True, write_statistics=True)
# `<base>.tmp-<token>` / `<base>.old-<token>`: what a write in progress (or a killed one) leaves.
LEFTOVER = re.compile(r"^(?P<base>.+)\.(?P<kind>tmp|old)-(?P<token>[0-9a-f]{8})$")
_RECOVER_DEPTH = 3  # OUT/<table>/<source>/<month>.tmp-…: leftovers sit at most this deep
_log = logging.getLogger("socialcorpus.storage")


def fs_and_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def join(url: str, *parts: str) -> str:
    return posixpath.join(url.rstrip("/"), *parts) if "://" in url else __import__("os").path.join(url, *parts)


# Every rename, file write and removal of a table write goes through these three, so a
# test can stop the process at any one of them (tests/test_storage_faults.py).
def _mv(fs, src: str, dst: str, recursive: bool = False) -> None:
    fs.mv(src, dst, recursive=recursive)


def _rm(fs, path: str, recursive: bool = False) -> None:
    fs.rm(path, recursive=recursive)


def _write_file(fs, path: str, data: bytes | pa.Table | Iterable[pa.Table], row_group_rows: int = ROW_GROUP_ROWS,
                schema: pa.Schema | None = None) -> None:
    """Write ``path``: bytes, one table, or row groups one at a time (an iterable of tables, each
    one row group, all of ``schema``: the file's bytes are those of writing their concatenation
    whole with ``row_group_rows``, while only one row group is held)."""
    with fs.open(path, "wb") as f:
        if isinstance(data, pa.Table):
            pq.write_table(data, f, row_group_size=row_group_rows, **PARQUET_OPTIONS)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            f.write(data)
        else:
            with pq.ParquetWriter(f, schema, **PARQUET_OPTIONS) as w:
                for group in data:
                    w.write_table(group, row_group_size=row_group_rows)


def _token() -> str:
    return uuid.uuid4().hex[:8]


def _discard(fs, path: str, recursive: bool) -> None:
    """Best-effort removal of a temporary after a failure (the original error is what matters)."""
    try:
        if fs.exists(path):
            _rm(fs, path, recursive=recursive)
    except Exception as e:  # noqa: BLE001 - never mask the error that got us here
        _log.warning("%s: could not remove after a failed write (%s); the next locked run removes it", path, e)


def write_dataset(url: str, tables: pa.Table | Iterable[pa.Table], *, rows_per_file: int = 1_000_000,
                  row_group_rows: int = ROW_GROUP_ROWS, schema: pa.Schema | None = None,
                  conform: Callable[[pa.Table], pa.Table] | None = None) -> list[str]:
    """Replace the dataset directory ``url`` with ``tables`` (one or an iterable of batches).

    Returns the relative file names written. An empty input still writes one empty file, so
    the schema is readable. The directory appears whole or not at all. Files are cut every
    ``rows_per_file`` rows and each file into row groups of ``row_group_rows`` from its start;
    batches are written a row group at a time as they come (``conform``, if given, is applied
    to each row group), so memory holds one row group, not the table, and the bytes are the
    same as writing each file's rows in one piece.
    """
    fs, path = fs_and_path(url)
    token = _token()
    tmp = f"{path}.tmp-{token}"
    fs.makedirs(tmp, exist_ok=True)
    batches = iter([tables] if isinstance(tables, pa.Table) else tables)
    names: list[str] = []
    state = {"pending": [], "rows": 0, "done": False, "schema": schema}  # rows taken, not yet written

    def take(n: int) -> pa.Table | None:
        """The next ``n`` rows (fewer at the end of the input) as one chunk, or None at its end."""
        while state["rows"] < n and not state["done"]:
            t = next(batches, None)
            if t is None:
                state["done"] = True
                continue
            state["schema"] = state["schema"] or t.schema  # an empty input still names its schema
            if t.num_rows:
                state["pending"].append(t)
                state["rows"] += t.num_rows
        if not state["rows"]:
            return None
        whole = pa.concat_tables(state["pending"]) if len(state["pending"]) > 1 else state["pending"][0]
        group, rest = whole.slice(0, n), whole.slice(n)
        state["pending"], state["rows"] = ([rest] if rest.num_rows else []), rest.num_rows
        group = group.combine_chunks()
        return conform(group) if conform is not None else group

    def groups(first: pa.Table):
        yield first
        written = first.num_rows
        while written < rows_per_file:
            group = take(min(row_group_rows, rows_per_file - written))
            if group is None:
                return
            yield group
            written += group.num_rows

    try:
        while True:
            first = take(min(row_group_rows, rows_per_file))
            if first is None:
                break
            _write_file(fs, f"{tmp}/part-{len(names):05d}.parquet", groups(first), row_group_rows,
                        schema or first.schema)
            names.append(f"part-{len(names):05d}.parquet")
        if not names:
            empty = state["schema"]
            if empty is None:
                raise ValueError(f"{url}: nothing to write and no schema given")
            _write_file(fs, f"{tmp}/part-00000.parquet", empty.empty_table(), row_group_rows)
            names.append("part-00000.parquet")
    except BaseException:
        _discard(fs, tmp, recursive=True)
        raise
    _swap_in(fs, token, path)
    return names


def put_bytes(fs, path: str, data: bytes) -> None:
    """Write ``data`` to a temporary sibling of ``path``, then rename it into place (whole or not at all)."""
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{_token()}"
    try:
        _write_file(fs, tmp, data)
        _mv(fs, tmp, path)
    except BaseException:
        _discard(fs, tmp, recursive=False)
        raise


def write_bytes(url: str, data: bytes) -> None:
    """Write one file (a manifest, tokenizer.json) at ``url`` atomically."""
    fs, path = fs_and_path(url)
    put_bytes(fs, path, data)


def _swap_in(fs, token: str, path: str) -> None:
    """Replace directory ``path`` by the finished ``path.tmp-<token>``; the old one goes last.

    Step by step: ``path`` -> ``path.old-<token>``, ``path.tmp-<token>`` -> ``path``, remove
    the old. An error in a rename puts the old table back before it propagates; a kill
    leaves the names :func:`recover` understands (the shared token ties them together).
    """
    tmp, old = f"{path}.tmp-{token}", f"{path}.old-{token}"
    had_old = fs.exists(path)
    try:
        if had_old:
            _mv(fs, path, old, recursive=True)
        _mv(fs, tmp, path, recursive=True)
    except BaseException:
        try:
            if had_old and fs.exists(old) and not fs.exists(path):
                _mv(fs, old, path, recursive=True)
        except Exception as e:  # noqa: BLE001 - the next locked run restores it (recover)
            _log.warning("%s: could not put the previous table back (%s); the next run restores it", path, e)
        _discard(fs, tmp, recursive=True)
        raise
    if had_old:
        _discard(fs, old, recursive=True)


def recover(out: str) -> dict:
    """Repair what killed writes left under ``out``; only safe while holding its output lock.

    For each leftover ``<base>.tmp-<t>`` / ``<base>.old-<t>`` (at most three levels deep):
    if ``<base>`` is missing and ``<base>.old-<t>`` exists, a run died between the two
    renames of :func:`_swap_in`: the old table is renamed back to ``<base>`` (the write that
    died never happened). Every other leftover is removed: a ``.tmp-`` is an unfinished or
    unpublished write, an ``.old-`` beside a live ``<base>`` a replaced table. Returns
    ``{"restored": [paths], "removed": [paths]}``.
    """
    fs, root = fs_and_path(out)
    report: dict[str, list[str]] = {"restored": [], "removed": []}
    if not fs.exists(root):
        return report
    found: dict[str, dict[str, list[str]]] = {}
    level = [root]
    for _ in range(_RECOVER_DEPTH):
        nxt = []
        for d in level:
            try:
                entries = fs.ls(d, detail=True)
            except FileNotFoundError:
                continue
            for e in entries:
                p = e["name"].rstrip("/")
                m = LEFTOVER.match(posixpath.basename(p))
                if m:
                    found.setdefault(posixpath.join(posixpath.dirname(p), m["base"]), {}).setdefault(
                        m["kind"], []).append(p)
                elif e.get("type") == "directory":
                    nxt.append(p)
        level = nxt
    for base, kinds in sorted(found.items()):
        olds = kinds.get("old", [])
        if olds and not fs.exists(base):
            newest = max(olds, key=lambda p: _mtime(fs, p))
            _mv(fs, newest, base, recursive=True)
            report["restored"].append(base)
            olds = [p for p in olds if p != newest]
        for p in [*kinds.get("tmp", []), *olds]:
            if fs.exists(p):
                _rm(fs, p, recursive=True)
                report["removed"].append(p)
    return report


def _mtime(fs, path: str) -> float:
    info = fs.info(path)
    t = info.get("mtime") or info.get("created") or 0
    return t.timestamp() if hasattr(t, "timestamp") else float(t)


def write_spark(df, url: str) -> None:
    """Write a Spark DataFrame as the dataset directory ``url``, atomically like write_dataset.

    Spark writes into a temporary sibling (its own part files, zstd); the directory is
    swapped in only after the job succeeded. Spark's _SUCCESS/.crc files are removed.
    """
    fs, path = fs_and_path(url)
    token = _token()
    tmp = f"{path}.tmp-{token}"
    tmp_url = url + tmp[len(path):] if url.endswith(path) else tmp
    try:
        df.write.mode("overwrite").option("compression", "zstd").parquet(tmp_url)
        for p in fs.find(tmp):
            name = posixpath.basename(p)
            if name.startswith(("_", ".")) or name.endswith(".crc"):
                _rm(fs, p)
    except BaseException:
        _discard(fs, tmp, recursive=True)
        raise
    _swap_in(fs, token, path)


def write_table(url: str, table: pa.Table | pl.DataFrame | Iterable[pa.Table], schema=None, **kw) -> list[str]:
    """Write one table (Polars or Arrow, or an iterable of Arrow batches, written as they come),
    conformed to ``schema`` (a ``schemas.Table``) if given."""
    if isinstance(table, pl.DataFrame):
        table = table.to_arrow()
    if schema is not None:
        return write_dataset(url, table, schema=schema.arrow, conform=schema.conform, **kw)
    return write_dataset(url, table, **kw)


def dataset_files(url: str) -> list[str]:
    fs, path = fs_and_path(url)
    if not fs.exists(path):
        return []
    files = [p for p in fs.find(path) if p.endswith(".parquet") and ".tmp-" not in p and ".old-" not in p]
    return sorted(files)


def remove_children_except(url: str, keep: set[str]) -> list[str]:
    """Remove the sub-directories of ``url`` whose names are not in ``keep`` (stale partitions)."""
    fs, path = fs_and_path(url)
    if not fs.exists(path):
        return []
    gone = []
    for p in fs.ls(path, detail=False):
        name = posixpath.basename(p.rstrip("/"))
        if name not in keep:
            _rm(fs, p, recursive=True)
            gone.append(name)
    return gone


def exists(url: str) -> bool:
    return bool(dataset_files(url))


def read_arrow(url: str, schema=None) -> pa.Table:
    """Read every Parquet file under ``url`` (recursively) as one Arrow table."""
    fs, _ = fs_and_path(url)
    files = dataset_files(url)
    if not files:
        raise FileNotFoundError(f"{url}: no table here. Run the stage that writes it first.")
    parts = []
    for f in files:
        with fs.open(f, "rb") as fh:
            parts.append(pq.read_table(fh))
    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return schema.conform(table) if schema is not None else table


def scan(url: str, schema=None) -> pl.LazyFrame:
    """A Polars LazyFrame over the dataset at ``url`` (native scan for local paths)."""
    fs, path = fs_and_path(url)
    if schema is None and type(fs).__name__ == "LocalFileSystem":
        files = dataset_files(url)
        if not files:
            raise FileNotFoundError(f"{url}: no table here. Run the stage that writes it first.")
        return pl.scan_parquet(files)
    return pl.from_arrow(read_arrow(url, schema)).lazy()


def read(url: str, schema=None) -> pl.DataFrame:
    return scan(url, schema).collect()
