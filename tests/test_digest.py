"""pipelines/core/digest.py: the Rust digests give hashlib's bytes, so tables and MinHash
signatures stay what they were when each value went through hashlib."""

from __future__ import annotations

import hashlib
import struct

import narwhals as nw
import polars as pl
import pytest

from pipelines.core import digest
from pipelines.engines.polars import PolarsEngine

VALUES = ["", "a", "héllo wörld", "日本語 テキスト", "emoji 🙂 and \x1f unit separator", "x" * 200,
          "line\nbreak\ttab", "t3_abc\x1ft1_xyz"]


@pytest.mark.parametrize("algorithm", digest.ALGORITHMS)
def test_hex_digest_equals_hashlib_and_keeps_nulls(algorithm):
    s = pl.Series("v", [*VALUES, None])
    got = s.to_frame().select(digest.hex_digest(pl.col("v"), algorithm))["v"].to_list()
    assert got[:-1] == [hashlib.new(algorithm, v.encode("utf-8")).hexdigest() for v in VALUES]
    assert got[-1] is None


def test_an_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="md5"):
        digest.hex_digest(pl.col("v"), "md5")


def test_sha1_prefix32_is_datasketchs_sha1_hash32():
    s = pl.Series("v", VALUES)
    want = [struct.unpack("<I", hashlib.sha1(v.encode("utf-8")).digest()[:4])[0] for v in VALUES]
    assert digest.sha1_prefix32(s).tolist() == want


def test_the_polars_engines_salted_digest_is_hashlib_of_salt_and_value():
    frame = nw.from_native(pl.LazyFrame({"k": [*VALUES, None]}))
    out = PolarsEngine().hex_digest(frame, "h", "k", "sha1", salt="salt\x1fuser\x1f").to_native().collect()
    assert out["h"].to_list()[:-1] == [hashlib.sha1(("salt\x1fuser\x1f" + v).encode()).hexdigest() for v in VALUES]
    assert out["h"][-1] is None
