"""Cryptographic digests as Polars expressions, computed in Rust by ``polars-hash``.

Polars' own ``hash()`` is not stable across versions, so digests that end up in tables (content
hashes, example ids, split assignment) and the MinHash shingle hash used to come from Python's
``hashlib``, one call per value. ``polars-hash`` gives the same bytes (SHA-1 and SHA-256 of the UTF-8
string, lowercase hex, null stays null; tests/test_digest.py holds it to hashlib) without a Python
call per value.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import polars_hash  # noqa: F401  (registers the ``chash`` and ``nchash`` expression namespaces)

ALGORITHMS = ("sha256", "sha1")


def hex_digest(expr: pl.Expr, algorithm: str = "sha256") -> pl.Expr:
    """The hex ``algorithm`` digest of the UTF-8 string ``expr``, equal to ``hashlib.new(algorithm,
    value.encode()).hexdigest()``; null stays null."""
    if algorithm == "sha256":
        return expr.chash.sha2_256()
    if algorithm == "sha1":
        return expr.nchash.sha1()
    raise ValueError(f"unknown digest {algorithm!r}; known: {ALGORITHMS}")


def sha1_prefix32(strings: pl.Series) -> np.ndarray:
    """The first four bytes of each string's SHA-1 (its UTF-8 bytes) read as a little-endian uint32:
    datasketch's ``sha1_hash32``. ``strings`` has no nulls."""
    top = strings.to_frame("s").select(hex_digest(pl.col("s"), "sha1").str.slice(0, 8)
                                       .str.to_integer(base=16, dtype=pl.UInt32))
    return top.to_series().to_numpy().byteswap()  # the hex reads big-endian; datasketch reads '<I'
