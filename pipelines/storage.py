"""Tables on fsspec storage: each table a Parquet dataset directory ``OUT/<table>/``.

Writes are atomic per directory: files go to a temporary sibling first and the finished
directory replaces the old one by rename, so a crash leaves the previous good state
readable and a re-run replaces exactly what it rewrites (a partition, a table).
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Iterable

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 65_536


def fs_and_path(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def join(url: str, *parts: str) -> str:
    return posixpath.join(url.rstrip("/"), *parts) if "://" in url else __import__("os").path.join(url, *parts)


def _write_parquet(fs, path: str, table: pa.Table, row_group_rows: int) -> None:
    with fs.open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd", row_group_size=row_group_rows,
                       use_dictionary=True, write_statistics=True)


def write_dataset(url: str, tables: pa.Table | Iterable[pa.Table], *, rows_per_file: int = 1_000_000,
                  row_group_rows: int = ROW_GROUP_ROWS, schema: pa.Schema | None = None) -> list[str]:
    """Replace the dataset directory ``url`` with ``tables`` (one or an iterable of batches).

    Returns the relative file names written. An empty input still writes one empty file, so
    the schema is readable. The directory appears whole or not at all.
    """
    fs, path = fs_and_path(url)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.makedirs(tmp, exist_ok=True)
    if isinstance(tables, pa.Table):
        tables = [tables]
    names: list[str] = []
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush():
        nonlocal pending, pending_rows
        name = f"part-{len(names):05d}.parquet"
        _write_parquet(fs, f"{tmp}/{name}", pa.concat_tables(pending), row_group_rows)
        names.append(name)
        pending, pending_rows = [], 0

    try:
        for t in tables:
            schema = schema or t.schema
            while t.num_rows:
                take = min(t.num_rows, rows_per_file - pending_rows)
                pending.append(t.slice(0, take))
                pending_rows += take
                t = t.slice(take)
                if pending_rows >= rows_per_file:
                    flush()
        if pending_rows or not names:
            if not pending:
                if schema is None:
                    raise ValueError(f"{url}: nothing to write and no schema given")
                pending = [schema.empty_table()]
            flush()
        _swap_in(fs, tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise
    return names


def put_bytes(fs, path: str, data: bytes) -> None:
    """Write ``data`` to a temporary sibling of ``path``, then rename it into place (whole or not at all)."""
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def write_bytes(url: str, data: bytes) -> None:
    """Write one file (a manifest, tokenizer.json) at ``url`` atomically."""
    fs, path = fs_and_path(url)
    put_bytes(fs, path, data)


def _swap_in(fs, tmp: str, path: str) -> None:
    """Replace directory ``path`` by the finished directory ``tmp`` (old one removed last)."""
    old = f"{path}.old-{uuid.uuid4().hex[:8]}"
    if fs.exists(path):
        fs.mv(path, old, recursive=True)
    fs.mv(tmp, path, recursive=True)
    if fs.exists(old):
        fs.rm(old, recursive=True)


def write_spark(df, url: str) -> None:
    """Write a Spark DataFrame as the dataset directory ``url``, atomically like write_dataset.

    Spark writes into a temporary sibling (its own part files, zstd); the directory is
    swapped in only after the job succeeded. Spark's _SUCCESS/.crc files are removed.
    """
    fs, path = fs_and_path(url)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_url = url + tmp[len(path):] if url.endswith(path) else tmp
    try:
        df.write.mode("overwrite").option("compression", "zstd").parquet(tmp_url)
        for p in fs.find(tmp):
            name = posixpath.basename(p)
            if name.startswith(("_", ".")) or name.endswith(".crc"):
                fs.rm(p)
        _swap_in(fs, tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise


def write_table(url: str, table: pa.Table | pl.DataFrame, schema=None, **kw) -> list[str]:
    """Write one table (Polars or Arrow), conformed to ``schema`` (a ``schemas.Table``) if given."""
    if isinstance(table, pl.DataFrame):
        table = table.to_arrow()
    if schema is not None:
        table = schema.conform(table)
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
            fs.rm(p, recursive=True)
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
