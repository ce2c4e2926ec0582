"""Spark engine parity (issue 8): both engines on the same real samples give the same tables.

One module-scoped build per engine over every real sample (../shared/data/real): the Polars
build through `pipelines.build`, the Spark build through the CLI (`socialcorpus build
--config F --engine spark`), both on the session's one local[2] SparkSession. The per-stage
tests run a Spark stage on the Polars build's input table and compare with the Polars
output; the per-table tests compare the two builds. Any difference fails with the first
differing key.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import polars as pl
import pytest

from conftest import TEST_SECRET, real_sources
from pipelines.core import storage
from pipelines.core.context import SECRET_ENV
from schemas import DEDUP, EXAMPLES, HISTORIES, MESSAGES, RECORDS, TIMELINE

pytestmark = pytest.mark.spark

TABLE_KEYS = {
    "messages": (RECORDS, [RECORDS.message_id]),
    "messages_anon": (RECORDS, [RECORDS.message_id]),
    "messages_dedup": (DEDUP, [DEDUP.message_id]),
    "timeline": (TIMELINE, [TIMELINE.message_id]),
    "reading_histories": (HISTORIES, [HISTORIES.message_id]),
    "pair_examples": (EXAMPLES, [EXAMPLES.example_id]),
}


def _to_polars(df) -> pl.DataFrame:
    if isinstance(df, pl.DataFrame):
        return df
    from pipelines.engines.spark import to_polars

    return to_polars(df)


def assert_same_table(expected: pl.DataFrame, got, key: list[str] | str, name: str = "table") -> None:
    """``got`` (Spark or Polars) holds exactly ``expected``'s rows: same columns, same values,
    compared row for row after sorting both by ``key``. Fails naming the first differing key."""
    key = [key] if isinstance(key, str) else list(key)
    got = _to_polars(got)
    missing = set(expected.columns) - set(got.columns)
    assert not missing, f"{name}: columns {sorted(missing)} missing on the Spark side"
    got = got.select(expected.columns).cast(expected.schema, strict=True)
    a, b = expected.sort(key, nulls_last=True), got.sort(key, nulls_last=True)
    if a.height != b.height or not a.select(key).equals(b.select(key)):
        only_a = a.select(key).join(b.select(key), on=key, how="anti", nulls_equal=True).sort(key)
        only_b = b.select(key).join(a.select(key), on=key, how="anti", nulls_equal=True).sort(key)
        first = (only_a.head(1).rows() or only_b.head(1).rows() or [None])[0]
        pytest.fail(f"{name}: {a.height} Polars rows vs {b.height} Spark rows; {only_a.height} keys only on "
                    f"Polars, {only_b.height} only on Spark; first differing key {first}")
    for c in expected.columns:
        diff = ~a.get_column(c).eq_missing(b.get_column(c))
        if diff.any():
            i = diff.arg_true()[0]
            pytest.fail(f"{name}: first differing key {a.row(i, named=True)[key[0]] if len(key) == 1 else a.select(key).row(i)}"
                        f": column {c!r} is {a.get_column(c)[i]!r} on Polars, {b.get_column(c)[i]!r} on Spark "
                        f"({int(diff.sum())} rows differ in this column)")


def _config(out: str, engine: str, sources: list[dict], sections: dict) -> dict:
    return {"out": out, "engine": engine, "sources": sources, "tokenizer": {"vocab_size": 2000}, **sections,
            "spark": {"master": "local[2]", "shuffle_partitions": 4}}


def _toml(d: dict) -> str:
    lines = [f'out = "{d["out"]}"', f'engine = "{d["engine"]}"']
    for sec in [k for k in d if isinstance(d[k], dict)]:
        lines.append(f"[{sec}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in d[sec].items()]
    for s in d["sources"]:
        lines += ["[[sources]]", f'format = "{s["format"]}"', f"paths = {json.dumps(s['paths'])}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def builds(real, real_built, spark, tmp_path_factory):
    """(polars out dir, spark out dir, polars summary, spark summary) over every real sample.

    The Polars side is the session's shared real build (conftest `real_built`); the Spark
    side runs the same configuration through the CLI with `--engine spark`.
    """
    from pipelines import cli

    real_config, pl_summary = real_built
    root = tmp_path_factory.mktemp("spark_parity")
    pl_out, sp_out = real_config.out, str(root / "spark")
    sources = [{"format": s.format, "paths": list(s.paths)} for s in real_config.sources]
    assert [s["format"] for s in sources] == [s["format"] for s in real_sources(real)]
    cfg_file = root / "corpus.toml"
    cfg_file.write_text(_toml(_config(sp_out, "polars", sources, real_config.sections)))
    old = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = TEST_SECRET
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = cli.main(["build", "--config", str(cfg_file), "--engine", "spark", "--json"])
    finally:
        if old is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = old
    assert rc == 0, buf.getvalue()
    return pl_out, sp_out, pl_summary, json.loads(buf.getvalue().strip().splitlines()[-1])


# --------------------------------------------------------------------------- the CLI run

def test_cli_build_with_engine_spark_runs_every_stage_and_says_where(builds):
    from pipelines.stages import STAGES

    _, _, _, sp = builds
    assert sp["engine"] == "spark"
    for stage in STAGES:
        if stage.available():
            want = "spark" if stage.runs_on("spark") else "polars"
            assert sp[stage.name]["engine"] == want, (stage.name, sp[stage.name])
    assert all(s.runs_on("spark") for s in STAGES)  # every stage has a Spark side
    assert all(sp[s.name]["engine"] == "spark" for s in STAGES)


# Summary fields that are timings or paths, not counts.
_NOT_COUNTS = ("engine", "seconds", "peak_rss_mb", "url", "tokenise_seconds", "assemble_write_seconds", "shard_tokens_per_s")


def test_stage_counts_are_the_same_on_both_engines(builds):
    _, _, pl_sum, sp_sum = builds
    for stage in ("ingest", "dedup", "anonymize", "neardup", "timeline", "histories", "examples", "tokenizer",
                  "shards"):
        got = {k: v for k, v in sp_sum[stage].items() if k not in _NOT_COUNTS}
        want = {k: v for k, v in pl_sum[stage].items() if k not in _NOT_COUNTS}
        assert got == want, stage


# --------------------------------------------------------------------------- per stage, same input

def test_content_hash_is_one_definition_with_the_same_digests_on_both_engines(builds, spark):
    """dedup.with_content_hash (one definition) on each engine's frame: the same digest for
    every raw row, and that digest is sha256 of the fields joined as the rule says."""
    import hashlib

    import narwhals as nw

    from pipelines import engines
    from pipelines.engines.spark import read_table
    from pipelines.stages.dedup import _HASH, _SEP, with_content_hash

    pl_out, *_ = builds
    url = storage.join(pl_out, "messages_raw")
    keys = [MESSAGES.source_uri, MESSAGES.source_record]

    def hashed(native):
        frame = with_content_hash(engines.frame(native), engines.of(native))
        return frame.select(MESSAGES.message_id, *keys, nw.col(_HASH).alias("h")).to_native()

    raw = storage.read(url)
    want = hashed(raw).collect()
    got = hashed(read_table(spark, url, MESSAGES))
    assert want.height > 20_000 and want["h"].null_count() == 0
    assert_same_table(want, got, keys, "content hash")
    r = raw.row(0, named=True)
    fields = [r[MESSAGES.text] if r[MESSAGES.text] is not None else "",
              *[v if v is not None else "\x00" for v in (r[MESSAGES.title], r[MESSAGES.extra])],
              str(r[MESSAGES.score]) if r[MESSAGES.score] is not None else "\x00"]
    assert want["h"][0] == hashlib.sha256(_SEP.join(fields).encode("utf-8")).hexdigest()


def test_spark_dedup_equals_polars_dedup_on_the_same_raw_messages(builds, spark):
    """One relational definition (pipelines/stages/dedup.py), run on each engine's frame."""
    from pipelines.engines.spark import read_table
    from pipelines.stages.dedup import dedup_records

    pl_out, *_ = builds
    raw_url = storage.join(pl_out, "messages_raw")
    want, want_stats = dedup_records(storage.read(raw_url))
    got, got_stats = dedup_records(read_table(spark, raw_url, MESSAGES))
    try:
        assert want_stats["collapsed"] > 0  # the real samples do hold re-exported copies
        assert got_stats == want_stats
        assert_same_table(want, got.select(RECORDS.names), RECORDS.message_id, "messages")
    finally:
        got.unpersist()


def test_spark_timeline_equals_polars_timeline_on_the_same_input(builds, spark):
    """One relational definition (pipelines/stages/timeline.py), run on each engine's frame."""
    from pipelines.engines.spark import read_table
    from pipelines.stages.timeline import build_timeline

    pl_out, *_ = builds
    url = storage.join(pl_out, "messages_dedup")
    want, want_stats = build_timeline(storage.scan(url))
    got, got_stats = build_timeline(read_table(spark, url, DEDUP))
    try:
        assert want_stats["timelines"] > 1 and want_stats["parent_linked"] > 0
        assert got_stats == want_stats
        assert_same_table(want, got.select(TIMELINE.names), TIMELINE.message_id, "timeline")
    finally:
        got.unpersist()


def test_spark_seq_is_dense_when_the_sort_spans_many_partitions(spark):
    """Generated input over 7 partitions: every timeline's seq is 0..n-1 in key order, the same
    function (timeline.number_seq) giving the same numbers on both engines."""
    from pyspark.sql import functions as F

    from pipelines import engines
    from pipelines.engines.spark import spark_schema
    from pipelines.stages.timeline import assign_timeline, number_seq

    def numbered(native):
        frame = number_seq(assign_timeline(engines.frame(native)), engines.of(native))
        return frame.select(DEDUP.message_id, TIMELINE.timeline_id, TIMELINE.seq).to_native()

    n = 3000
    rows = pl.DataFrame({
        DEDUP.message_id: [f"m{i:05d}" for i in range(n)],
        DEDUP.platform: ["irc" if i % 3 else "diplomacy" for i in range(n)],
        DEDUP.community: [f"g{i % 4}" for i in range(n)],
        DEDUP.thread_id: [f"t{i % 11}" for i in range(n)],
        DEDUP.time_kind: ["wall" if i % 3 else "ordinal" for i in range(n)],
        DEDUP.created_at: [None if i % 3 == 0 else 1_600_000_000_000_000 + (i * 7919 % 500) * 60_000_000
                           for i in range(n)],
        DEDUP.time_ordinal: [i * 31 % 97 if i % 3 == 0 else None for i in range(n)],
        DEDUP.order_in_source: [i % 5 for i in range(n)],
    }).with_columns(pl.col(DEDUP.created_at).cast(pl.Datetime("us", "UTC")))
    sdf = spark.createDataFrame(rows.to_arrow().to_pandas(), spark_schema(rows.to_arrow().schema, nullable=True))
    sdf = sdf.repartition(7)
    # 7 sort partitions, not coalesced into one by adaptive execution (these rows are few).
    coalesce = "spark.sql.adaptive.coalescePartitions.enabled"
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    spark.conf.set(coalesce, "false")
    try:
        got = numbered(sdf)
        parts = got.select(F.spark_partition_id().alias("p")).distinct().count()
        got_pl = _to_polars(got)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")
        spark.conf.unset(coalesce)
    assert parts > 2  # the numbering really ran in several tasks
    want = numbered(rows).collect()
    assert_same_table(want, got_pl, DEDUP.message_id, "seq")
    dense = got_pl.group_by(TIMELINE.timeline_id).agg(pl.col(TIMELINE.seq).sort().alias("s"), pl.len())
    for s, ln in dense.select("s", "len").iter_rows():
        assert s == list(range(ln))


def test_spark_histories_equal_polars_histories_on_the_same_timeline(builds, spark):
    """One relational definition (pipelines/stages/histories.py), run on each engine's frame."""
    from pipelines.engines.spark import read_table
    from pipelines.stages.histories import HistoryConfig, build_histories

    pl_out, *_ = builds
    url = storage.join(pl_out, "timeline")
    cfg = HistoryConfig(n=3, k=4)  # not the defaults the builds use
    want, want_stats = build_histories(storage.scan(url), cfg)
    got, got_stats = build_histories(read_table(spark, url, TIMELINE), cfg)
    try:
        assert want_stats["by_structure"].get("tree", 0) > 0 and want_stats["by_structure"].get("linear", 0) > 0
        assert got_stats == want_stats
        assert_same_table(want, got.select(HISTORIES.names), HISTORIES.message_id, "reading_histories")
    finally:
        got.unpersist()

def test_spark_anonymize_equals_polars_anonymize_on_the_same_messages(builds, spark):
    """One definition (pipelines/stages/anonymize.py), run on each engine's frame: same rows and
    the same summary, Presidio counters from the executors included."""
    from pipelines.engines.spark import read_table
    from pipelines.stages.anonymize import AnonymizeConfig, anonymize_messages

    pl_out, *_ = builds
    url = storage.join(pl_out, RECORDS.name)
    want, want_stats = anonymize_messages(storage.read(url), TEST_SECRET.encode(), AnonymizeConfig())
    got, got_stats = anonymize_messages(read_table(spark, url, RECORDS), TEST_SECRET.encode(), AnonymizeConfig())
    try:
        assert want_stats["presidio_strings"] > 0 and want_stats["replacements"].get("MENTION", 0) > 0
        assert got_stats == want_stats
        assert_same_table(want, got, RECORDS.message_id, "messages_anon")
    finally:
        got.unpersist()


def test_spark_tokenizer_sample_equals_polars_on_the_same_input(builds, spark):
    """One definition (pipelines/stages/tokenizer.py): the same train-split count and the same
    evenly spaced sample, in the same order (a step > 1, so every_nth's positions matter)."""
    from pipelines.core.settings import TokenizerConfig
    from pipelines.engines.polars import PolarsEngine
    from pipelines.engines.spark import SparkEngine
    from pipelines.stages.tokenizer import training_sample

    pl_out, *_ = builds
    cfg = TokenizerConfig(vocab_size=2000, max_training_messages=997)
    got = {}
    for engine in (PolarsEngine(), SparkEngine(spark)):
        got[engine.name] = training_sample(engine.scan(storage.join(pl_out, TIMELINE.name), TIMELINE),
                                           engine.scan(storage.join(pl_out, EXAMPLES.name), EXAMPLES), cfg, engine)
    (n, want), (m, texts) = got["polars"], got["spark"]
    assert n == m and n > 2 * cfg.max_training_messages and 0 < want.len() <= cfg.max_training_messages
    assert texts.to_list() == want.to_list()


def test_spark_examples_equal_polars_examples_on_the_same_inputs(builds, spark):
    """One relational definition (pipelines/stages/examples.py), run on each engine's frames, with
    every option on and caps that bite (the whole builds compare the defaults)."""
    from pipelines.engines.spark import read_table
    from pipelines.stages.examples import ExamplesConfig, build_examples
    from pipelines.stages.histories import HistoryConfig

    pl_out, *_ = builds
    tl_url, h_url = storage.join(pl_out, "timeline"), storage.join(pl_out, "reading_histories")
    middle = storage.read(tl_url).get_column(TIMELINE.created_at).drop_nulls().sort()
    cfg = ExamplesConfig(max_per_target=2, max_per_pair=3, max_per_author=40, other_public=True, user_disjoint=True,
                         validation_fraction=0.2, test_fraction=0.1, split_salt="parity",
                         temporal_cutoff=middle[len(middle) // 2].isoformat())
    hcfg = HistoryConfig(k=4)  # K sets the stream lengths only (N is the histories' own)
    want, want_stats = build_examples(storage.scan(tl_url), storage.scan(h_url), cfg, hcfg)
    got, got_stats = build_examples(read_table(spark, tl_url, TIMELINE), read_table(spark, h_url, HISTORIES), cfg, hcfg)
    d = want_stats["dropped_by_reason"]
    assert all(d[r] > 0 for r in ("user_disjoint", "cap_target", "cap_pair", "cap_author", "no_interlocutor")), d
    assert set(want_stats["by_split"]) == {"train", "validation", "test"} and want.height > 1000
    assert want.filter(pl.col(EXAMPLES.other_seqs).list.len() > 0).height > 0
    assert got_stats == want_stats
    assert_same_table(want, got, EXAMPLES.example_id, "pair_examples")


# --------------------------------------------------------------------------- both builds, every table

def test_ingest_tables_are_the_same_on_both_engines(builds):
    pl_out, sp_out, *_ = builds
    want = storage.read(storage.join(pl_out, "messages_raw"))
    got = storage.read(storage.join(sp_out, "messages_raw"))
    assert want.height > 20_000
    assert_same_table(want, got, [MESSAGES.source_uri, MESSAGES.source_record, MESSAGES.message_id], "messages_raw")
    qa = storage.read(storage.join(pl_out, "quarantine"))
    qb = storage.read(storage.join(sp_out, "quarantine"))
    assert_same_table(qa, qb, ["source_uri", "source_record", "byte_offset", "reason"], "quarantine")


@pytest.mark.parametrize("table", list(TABLE_KEYS))
def test_every_table_is_the_same_on_both_engines(builds, table):
    pl_out, sp_out, *_ = builds
    schema, key = TABLE_KEYS[table]
    want = storage.read(storage.join(pl_out, table))
    got = storage.read(storage.join(sp_out, table))
    assert want.height > 1000, table
    assert_same_table(want, got, key, table)


def test_shards_hold_the_same_examples_and_tokens_per_split(builds):
    from pipelines.stages.shards import MANIFEST, SPLITS, read_flat
    from schemas import SHARD

    pl_out, sp_out, *_ = builds
    total = 0
    for split in SPLITS:
        tables = []
        for out in (pl_out, sp_out):
            cols = [SHARD.example_id, SHARD.window_tokens, SHARD.own_tokens, SHARD.other_tokens]
            # the streams as the loader assembles them from the references
            tables.append(pl.from_arrow(read_flat(storage.join(out, "shards", split, MANIFEST)).select(cols)))
        want, got = tables
        if want.height:
            assert_same_table(want, got, SHARD.example_id, f"shards/{split}")
        else:
            assert got.height == 0, split
        total += want.height
    assert total > 1000


def test_tokenizer_and_shard_files_are_byte_identical_on_both_engines(builds):
    """Same tokenizer.json, and per split the same manifest and the same files (names carry hashes)."""
    from pipelines.stages.shards import MANIFEST, SPLITS

    pl_out, sp_out, *_ = builds
    read = lambda out, *p: storage.fs_and_path(storage.join(out, *p))[0].cat_file(  # noqa: E731
        storage.fs_and_path(storage.join(out, *p))[1])
    assert read(pl_out, "tokenizer.json") == read(sp_out, "tokenizer.json")
    files = 0
    for split in SPLITS:
        man = read(pl_out, "shards", split, MANIFEST)
        assert read(sp_out, "shards", split, MANIFEST) == man, split
        doc = json.loads(man)
        for s in doc["shards"] + doc.get("store", {}).get("files", []):  # example files and token store
            assert read(sp_out, "shards", split, s["path"]) == read(pl_out, "shards", split, s["path"]), s["path"]
            files += 1
    assert files >= 2 and "store" in doc


# --------------------------------------------------------------------------- generated inputs

def test_spark_components_equal_polars_components_on_long_chains(spark):
    """Two long chains and a star, edges in scrambled order: the same components as Polars."""
    import narwhals as nw

    from pipelines.engines.spark import SparkEngine
    from pipelines.stages.neardup import components

    edges = [(i, i + 1) for i in range(0, 39)] + [(i, i + 1) for i in range(50, 69)] + [(80, j) for j in range(81, 86)]
    edges = [edges[(i * 17) % len(edges)] for i in range(len(edges))]  # 17 is coprime with the length
    want = components(pl.DataFrame({"u": [u for u, _ in edges], "v": [v for _, v in edges]},
                                    schema={"u": pl.Int64, "v": pl.Int64}))
    got = components(nw.from_native(spark.createDataFrame([(f"n{u:03d}", f"n{v:03d}") for u, v in edges],
                                                          "u string, v string")), SparkEngine(spark))
    got_pl = _to_polars(got.to_native())
    want_named = want.select(pl.format("n{}", pl.col("node").cast(pl.String).str.zfill(3)).alias("node"),
                             pl.format("n{}", pl.col("label").cast(pl.String).str.zfill(3)).alias("label"))
    assert want_named["label"].n_unique() == 3
    assert_same_table(want_named, got_pl, "node", "components")


@pytest.mark.parametrize("layout", ["reference", "flat"])
def test_spark_shards_cut_many_files_byte_identical_to_polars(builds, spark, tmp_path, layout):
    """A subset of the real examples, small files and render batches: every file and manifest
    (and the token store of the reference layout) equals the Polars engine's byte for byte."""
    import shutil

    from pipelines.stages import shards as polars_shards
    from pipelines.core.config import from_dict
    from pipelines.core.context import RunContext
    from pipelines.engines.spark import SparkEngine
    from pipelines.stages.shards import MANIFEST, SPLITS, STORE

    pl_out, *_ = builds
    section = {"target_file_bytes": 400_000, "examples_per_batch": 300, "row_group_rows": 64, "seed": 7,
               "layout": layout}
    examples = storage.read(storage.join(pl_out, "pair_examples")).sort(EXAMPLES.example_id).gather_every(8)
    outs = {}
    for engine in ("polars", "spark"):
        out = tmp_path / engine
        out.mkdir()
        shutil.copytree(storage.join(pl_out, "timeline"), out / "timeline")
        shutil.copy(storage.join(pl_out, "tokenizer.json"), out / "tokenizer.json")
        storage.write_table(str(out / "pair_examples"), examples, schema=EXAMPLES)
        ctx = RunContext(from_dict({"out": str(out), "shards": section}, base_dir=str(out)), secret_value=TEST_SECRET)
        outs[engine] = polars_shards.run(ctx, None if engine == "polars" else SparkEngine(spark)).summary()
    counts = {k: v for k, v in outs["polars"].items() if k not in _NOT_COUNTS}
    assert {k: v for k, v in outs["spark"].items() if k not in _NOT_COUNTS} == counts
    assert counts["splits"]["train"]["shards"] > 2
    assert ((tmp_path / "polars" / "shards" / STORE / MANIFEST).parent.exists()) == (layout == "reference")
    for split in (*SPLITS, *((STORE,) if layout == "reference" else ())):
        a, b = tmp_path / "polars" / "shards" / split, tmp_path / "spark" / "shards" / split
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir()), split
        for p in a.iterdir():
            assert (b / p.name).read_bytes() == p.read_bytes(), (split, p.name)
        assert (a / MANIFEST).exists() or split == STORE
