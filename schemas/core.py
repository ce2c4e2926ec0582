"""Declaring a table once: its columns, Arrow types, nullability and documentation.

Every other representation (Polars schema, Spark schema, docs, Dagster column metadata)
is derived from a :class:`Table`. Column names are read as attributes of the table, so a
typo is an ``AttributeError`` rather than a silently empty column::

    from schemas import MESSAGES as M
    pl.col(M.author_id)          # == pl.col("author_id")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    doc: str

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable, metadata={"doc": self.doc})


class Table:
    """An ordered set of columns with a name, a schema version and a description."""

    def __init__(self, name: str, version: int, doc: str, columns: Iterable[Column]):
        self.name = name
        self.version = version
        self.doc = doc
        self.columns: tuple[Column, ...] = tuple(columns)
        names = [c.name for c in self.columns]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"table {name}: duplicate columns {sorted(dup)}")
        self._by_name = {c.name: c for c in self.columns}

    def __getattr__(self, item: str) -> str:
        # Only called when normal lookup fails: column names read as attributes.
        by_name = self.__dict__.get("_by_name", {})
        if item in by_name:
            return item
        raise AttributeError(f"table {self.__dict__.get('name')!r} has no column {item!r}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return self._by_name[name]

    @cached_property
    def arrow(self) -> pa.Schema:  # built once per table (a table never changes)
        return pa.schema(
            [c.field() for c in self.columns],
            metadata={"table": self.name, "schema_version": str(self.version)},
        )

    @property
    def polars(self):
        import polars as pl

        return pl.Schema(pl.from_arrow(self.arrow.empty_table()).schema)

    def extend(self, name: str, version: int, doc: str, columns: Iterable[Column]) -> "Table":
        """A new table with these columns appended after this table's."""
        return Table(name, version, doc, [*self.columns, *columns])

    def conform(self, table: pa.Table) -> pa.Table:
        """Select and cast ``table`` to exactly this schema (missing nullable columns become null).

        Raises ``ValueError`` naming the column if a required column is missing or has nulls.
        """
        arrays = []
        for c in self.columns:
            if c.name in table.column_names:
                arr = table.column(c.name)
                if arr.type != c.type:
                    arr = arr.cast(c.type)
            else:
                if not c.nullable:
                    raise ValueError(f"table {self.name}: required column {c.name!r} is missing")
                arr = pa.nulls(table.num_rows, type=c.type)
            if not c.nullable and arr.null_count:
                raise ValueError(
                    f"table {self.name}: column {c.name!r} is required but has {arr.null_count} nulls"
                )
            arrays.append(arr)
        return pa.Table.from_arrays(arrays, schema=self.arrow)

    def markdown(self) -> str:
        lines = [f"### `{self.name}` (schema version {self.version})", "", self.doc, "",
                 "| column | type | nullable | meaning |", "|---|---|---|---|"]
        for c in self.columns:
            doc = c.doc.replace("|", "\\|")
            lines.append(f"| `{c.name}` | `{c.type}` | {'yes' if c.nullable else 'no'} | {doc} |")
        return "\n".join(lines) + "\n"
