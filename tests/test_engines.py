"""The engine primitives (pipelines/engines): each one gives the same rows on Polars and on Spark.

The stages are written once over narwhals and call these for what narwhals cannot say
portably, so a primitive that differs between engines would make the two engines' tables
differ. Every test runs the primitive on the same input on both and compares.
"""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from pipelines import engines
from pipelines.engines.polars import PolarsEngine

ROWS = {
    "k": ["a", "a", "a", "b", "b", "c"],
    "x": [3, None, 1, 7, 7, None],
    "y": [None, 2, 2, None, 5, None],
    "z": [9, 8, None, 6, 5, None],
    "t": ["x", None, "é", "", "yy", "z\x1fq"],
}


def _polars():
    return engines.frame(pl.DataFrame(ROWS))


def _spark(spark):
    schema = "k string, x bigint, y bigint, z bigint, t string"
    return engines.frame(spark.createDataFrame(list(zip(*ROWS.values())), schema))


def _rows(frame, sort_by):
    return engines.to_polars(frame).sort(sort_by, nulls_last=True).rows()


def _both(spark, op, sort_by):
    """op(engine, frame) on each engine; both results' rows, sorted."""
    pe = PolarsEngine()
    want = _rows(op(pe, _polars()), sort_by)
    sf = _spark(spark)
    got = _rows(op(engines.of(sf.to_native()), sf), sort_by)
    return want, got


def test_pack_drops_nulls_keeps_order_and_limits():
    out = PolarsEngine().pack(_polars(), "l", ["x", "y", "z"], limit=2)
    got = dict(zip(range(6), engines.to_polars(out)["l"].to_list()))
    assert got == {0: [3, 9], 1: [2, 8], 2: [1, 2], 3: [7, 6], 4: [7, 5], 5: []}
    empty = engines.to_polars(PolarsEngine().pack(_polars(), "l", []))["l"].to_list()
    assert empty == [[]] * 6


def test_first_by_takes_the_first_row_under_a_mixed_ordering_nulls_last():
    out = PolarsEngine().first_by(_polars(), ["k"], [("x", True), ("z", False)])
    got = {r[0]: r for r in engines.to_polars(out).rows()}
    assert got["a"][1] == 3  # x descending, null last
    assert got["b"][3] == 5  # x ties at 7: z ascending
    assert got["c"][1] is None and len(got) == 3


def test_hex_digest_is_hashlib():
    out = engines.to_polars(PolarsEngine().hex_digest(_polars(), "h", "t", "sha1", salt="s\x1f"))
    for t, h in zip(out["t"].to_list(), out["h"].to_list()):
        assert h == (None if t is None else hashlib.sha1(("s\x1f" + t).encode()).hexdigest())


@pytest.mark.spark
def test_primitives_agree_on_polars_and_spark(spark):
    checks = {
        "pack": (lambda e, f: e.pack(f, "l", ["x", "y", "z"], limit=2).select("k", "x", "y", "z", "l"),
                 ["k", "x", "y", "z"]),
        "pack_all": (lambda e, f: e.pack(f, "l", ["z", "x"]).select("k", "x", "y", "z", "l"), ["k", "x", "y", "z"]),
        "pack_none": (lambda e, f: e.pack(f, "l", []).select("k", "x", "y", "z", "l"), ["k", "x", "y", "z"]),
        "first_by": (lambda e, f: e.first_by(f, ["k"], [("x", True), ("z", False)]).select("k", "x", "z"), ["k"]),
        "first_by_asc": (lambda e, f: e.first_by(f, ["k"], [("y", False), ("t", True)]).select("k", "y", "t"), ["k"]),
        "sha256": (lambda e, f: e.hex_digest(f, "h", "t").select("t", "h"), ["t"]),
        "sha1_salt": (lambda e, f: e.hex_digest(f, "h", "t", "sha1", "salt\x1f").select("t", "h"), ["t"]),
    }
    for name, (op, key) in checks.items():
        want, got = _both(spark, op, key)
        assert got == want, name


def _upper_twice():
    """A map_batches function: per row, `t` upper-cased in Python, twice for rows with an `x`
    (nested, so Spark ships it by value: the tests folder is not importable on workers)."""

    def run(batches):
        for b in batches:
            df = pl.from_arrow(b)
            out = pl.concat([df, df.filter(pl.col("x").is_not_null())]).select(
                "k", "x", pl.col("t").map_elements(str.upper, return_dtype=pl.String).alias("u"))
            yield from out.to_arrow().to_batches()  # large_string: the engine casts to the schema

    return run


def _map_schema():
    import pyarrow as pa

    return pa.schema([("k", pa.string()), ("x", pa.int64()), ("u", pa.string())])


def test_map_batches_runs_python_per_batch_in_input_order_in_slices():
    import pyarrow as pa

    seen = []

    def sizes(batches):
        for b in batches:
            seen.append(b.num_rows)
            yield pa.RecordBatch.from_arrays([b.column("k")], names=["k"])

    out = engines.to_polars(PolarsEngine().map_batches(_polars(), sizes, pa.schema([("k", pa.string())]),
                                                       batch_rows=4))
    assert seen == [4, 2] and out["k"].to_list() == ROWS["k"]
    got = engines.to_polars(PolarsEngine().map_batches(_polars(), _upper_twice(), _map_schema()))
    assert got.height == 6 + 4 and got.schema["u"] == pl.String
    assert got["u"].head(6).to_list() == [None if t is None else t.upper() for t in ROWS["t"]]


def test_every_nth_takes_evenly_spaced_rows_in_the_order():
    out = engines.to_polars(PolarsEngine().every_nth(_polars(), ["k", "x", "z"], 2))
    assert sorted(out["z"].to_list()) == [6, 8, 9]  # sorted (nulls first): rows 0, 2, 4
    assert engines.to_polars(PolarsEngine().every_nth(_polars(), ["k"], 1)).height == 6


@pytest.mark.spark
def test_map_batches_and_every_nth_agree_on_polars_and_spark(spark):
    checks = {
        "map_batches": (lambda e, f: e.map_batches(f, _upper_twice(), _map_schema(), batch_rows=2), ["k", "x", "u"]),
        "every_nth": (lambda e, f: e.every_nth(f, ["k", "x", "z"], 2).select("k", "x", "z"), ["k", "x", "z"]),
        "every_nth_all": (lambda e, f: e.every_nth(f, ["t"], 1).select("k", "t"), ["k", "t"]),
    }
    for name, (op, key) in checks.items():
        want, got = _both(spark, lambda e, f: op(e, f if e.name == "polars" else
                                                 engines.frame(f.to_native().repartition(3))), key)
        assert got == want, name


def test_number_rows_is_dense_per_group_in_key_order_nulls_last():
    out = engines.to_polars(PolarsEngine().number_rows(_polars(), "n", ["k"], ["x", "z"]))
    got = sorted(zip(out["k"].to_list(), out["x"].to_list(), out["z"].to_list(), out["n"].to_list()),
                 key=lambda r: (r[0], r[3]))
    assert got == [("a", 1, None, 0), ("a", 3, 9, 1), ("a", None, 8, 2),
                   ("b", 7, 5, 0), ("b", 7, 6, 1), ("c", None, None, 0)]
    out = engines.to_polars(PolarsEngine().number_rows(_polars(), "n", [], ["k", "x"])).sort("n")
    assert out["n"].to_list() == list(range(6)) and out["k"].to_list() == ["a", "a", "a", "b", "b", "c"]


@pytest.mark.spark
def test_number_rows_and_epoch_us_agree_on_polars_and_spark(spark):
    from datetime import datetime, timezone

    checks = {
        "number_rows": (lambda e, f: e.number_rows(f, "n", ["k"], ["x", "z"]).select("k", "x", "z", "n"),
                        ["k", "n"]),
        "number_rows_by_text": (lambda e, f: e.number_rows(f, "n", ["k"], ["t"]).select("k", "t", "n"), ["k", "n"]),
        # no groups: one numbering over every row (near-dup numbers its messages so)
        "number_rows_ungrouped": (lambda e, f: e.number_rows(f, "n", [], ["k", "x", "z"]).select("k", "x", "z", "n"),
                                  ["n"]),
    }
    for name, (op, key) in checks.items():
        want, got = _both(spark, op, key)
        assert got == want, name
    times = [datetime(2021, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc), None,
             datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc)]
    pf = engines.frame(pl.DataFrame({"i": [0, 1, 2], "d": times}))
    sf = engines.frame(spark.createDataFrame([(i, d) for i, d in enumerate(times)], "i bigint, d timestamp"))
    want = engines.to_polars(PolarsEngine().epoch_us(pf, "u", "d")).sort("i")["u"].to_list()
    got = engines.to_polars(engines.of(sf.to_native()).epoch_us(sf, "u", "d")).sort("i")["u"].to_list()
    assert want == got == [1614834367891011, None, -1_000_000]


@pytest.mark.spark
def test_examples_primitives_agree_on_both_engines(spark):
    """The engine primitives the examples stage adds (epoch_us, int_ranges, attach_lists,
    materialize) give the same rows on Polars and Spark, nulls and empty lists included."""
    import datetime as dt

    rows = pl.DataFrame({"k": ["a", "a", "b", "c"], "lo": [0, 2, 3, 1], "hi": [3, 2, 1, 2],
                         "at": [dt.datetime(2013, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc), None,
                                dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
                                dt.datetime(2024, 2, 29, 12, tzinfo=dt.timezone.utc)]})
    items = pl.DataFrame({"k": ["a", "a", "a", "b", "x"], "s": [5, 1, 3, 2, 0], "g": [0.5, None, 1.5, None, 9.0]})

    def run(engine, frame, its):
        out = engine.int_ranges(engine.epoch_us(frame, "us", "at"), "r", "lo", "hi")
        out = engine.attach_lists(out, ["k"], its, {"ss": "s", "gs": "g"}, order_by="s")
        return engines.to_polars(engine.materialize(out)).select("k", "lo", "us", "r", "ss", "gs").sort("k", "lo")

    want = run(PolarsEngine(), engines.frame(rows), engines.frame(items))
    sf = spark.createDataFrame(rows.to_pandas(), "k string, lo bigint, hi bigint, at timestamp")
    si = spark.createDataFrame(items.to_pandas(), "k string, s bigint, g double")
    got = run(engines.of(sf), engines.frame(sf), engines.frame(si))
    assert want.rows() == [("a", 0, 1356998400000001, [0, 1, 2], [1, 3, 5], [None, 1.5, 0.5]),
                           ("a", 2, None, [], [1, 3, 5], [None, 1.5, 0.5]),
                           ("b", 3, -1000000, [], [2], [None]), ("c", 1, 1709208000000000, [1], [], [])]
    assert got.cast(want.schema).rows() == want.rows()
