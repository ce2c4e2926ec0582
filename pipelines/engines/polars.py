"""The Polars engine: narwhals frames backed by Polars LazyFrames; tables through pipelines.core.storage."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import hashlib

import narwhals as nw
import polars as pl

from pipelines.core import storage


class PolarsEngine:
    name = "polars"

    def scan(self, url: str, table=None) -> nw.LazyFrame:
        lf = storage.scan(url)
        if table is not None:
            lf = lf.select(table.names)
        return nw.from_native(lf)

    def write(self, frame: nw.LazyFrame, url: str, table, order_by: Sequence[str] = ()) -> None:
        lf = frame.to_native()
        if order_by:
            lf = lf.sort(list(order_by))
        storage.write_table(url, lf.collect(), schema=table)

    @contextmanager
    def held(self, frame: nw.LazyFrame) -> Iterator[nw.LazyFrame]:
        yield nw.from_native(frame.to_native().collect().lazy())

    def pack(self, frame: nw.LazyFrame, out: str, columns: Sequence[str], limit: int | None = None) -> nw.LazyFrame:
        if not columns:
            expr = pl.lit([], dtype=pl.List(pl.Int64))
        else:
            expr = pl.concat_list([pl.col(c) for c in columns]).list.drop_nulls()
            if limit is not None:
                expr = expr.list.head(limit)
        return nw.from_native(frame.to_native().with_columns(expr.alias(out)))

    def first_by(self, frame: nw.LazyFrame, keys: Sequence[str],
                 order: Sequence[tuple[str, bool]]) -> nw.LazyFrame:
        cols = [c for c, _ in order]
        lf = (frame.to_native().sort([*keys, *cols], descending=[False] * len(keys) + [d for _, d in order],
                                     nulls_last=True)
              .unique(subset=list(keys), keep="first", maintain_order=True))
        return nw.from_native(lf)

    def hex_digest(self, frame: nw.LazyFrame, out: str, column: str, algorithm: str = "sha256",
                   salt: str = "") -> nw.LazyFrame:
        # Python's hashlib: Polars has no stable cryptographic hash (its `hash()` may change
        # between versions). Null stays null.
        enc = salt.encode("utf-8")

        def digest(values: pl.Series) -> pl.Series:
            return pl.Series(out, [None if v is None else hashlib.new(algorithm, enc + v.encode("utf-8")).hexdigest()
                                   for v in values.to_list()], dtype=pl.String)

        expr = pl.col(column).map_batches(digest, return_dtype=pl.String)
        return nw.from_native(frame.to_native().with_columns(expr.alias(out)))

    def ingest(self, format: str, patterns, messages_url: str, quarantine_url: str, log=None):
        from pipelines.stages.ingest import ingest

        return ingest(format, patterns, messages_url, quarantine_url, log)

    # -- timeline primitives (add above this line)

    # -- examples primitives (add above this line)
