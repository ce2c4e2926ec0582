"""The Polars engine writes pair_examples a slice of candidates at a time, and past BUCKET_MESSAGES
messages a bucket of authors at a time (bounded memory): the files are byte for byte those of
assembling the whole table and sorting it."""

import os

import narwhals as nw
import pytest

from pipelines.core import storage
from pipelines.engines.polars import PolarsEngine
from pipelines.stages.examples import (ORDER, ExamplesConfig, assemble, author_buckets, example_parts, prepared,
                                       write_by_authors, write_sorted)
from pipelines.stages.histories import HistoryConfig
from schemas import EXAMPLES as E
from schemas import HISTORIES as H
from schemas import TIMELINE as T


def _files(folder) -> dict[str, bytes]:
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def parts(real_built):
    # The real samples' timeline and histories (ten timelines, Diplomacy's private dialogs among
    # them), with the interlocutor's public messages in its stream too.
    config, _ = real_built
    cfg, hcfg = ExamplesConfig(other_public=True), HistoryConfig()
    engine = PolarsEngine()
    (kept, per_target, other), _ = example_parts(engine.scan(config.table_url(T.name), T),
                                                 engine.scan(config.table_url(H.name), H), cfg, hcfg, engine)
    return engine, kept, per_target, other


@pytest.mark.parametrize("slice_rows", [1_000, 4_096, 1_000_000])
def test_slices_write_the_bytes_of_one_sorted_write(tmp_path, parts, slice_rows):
    engine, kept, per_target, other = parts
    whole, sliced = str(tmp_path / "whole"), str(tmp_path / "sliced")
    engine.write(assemble(kept, per_target, other, engine), whole, E, order_by=ORDER)
    write_sorted(kept, per_target, other, sliced, engine, slice_rows=slice_rows)
    got = storage.read(sliced)
    assert got.height > 3 * slice_rows or slice_rows == 1_000_000
    assert got[E.other_seqs].list.len().sum() > 0  # the interlocutor items are picked per slice too
    assert got.select(E.timeline_id).n_unique() > 1  # slices run across timelines
    assert _files(sliced) == _files(whole)


def test_an_empty_table_is_written_with_its_schema(tmp_path, parts):
    engine, kept, per_target, other = parts
    none = kept.filter(nw.col(E.target_seq) < 0)  # no candidate kept
    write_sorted(none, per_target, other, str(tmp_path / "empty"), engine)
    engine.write(assemble(none, per_target, other, engine), str(tmp_path / "whole"), E, order_by=ORDER)
    got = storage.read(str(tmp_path / "empty"))
    assert got.height == 0 and got.columns == list(E.names)
    assert _files(str(tmp_path / "empty")) == _files(str(tmp_path / "whole"))


@pytest.mark.parametrize("buckets", [3, 7])
@pytest.mark.parametrize("spill", [False, True])
def test_authors_in_buckets_write_the_bytes_and_counts_of_one_write(tmp_path, real_built, buckets, spill):
    """``write_by_authors`` (the Polars run past BUCKET_MESSAGES messages) against one bucket: the
    same files byte for byte and the same counts, with the caps (per pair, per author) in force."""
    config, _ = real_built
    cfg, hcfg = ExamplesConfig(other_public=True, max_per_target=2, max_per_author=40), HistoryConfig()
    one = PolarsEngine()
    tl, h = one.scan(config.table_url(T.name), T), one.scan(config.table_url(H.name), H)
    (kept, per_target, other), want = example_parts(tl, h, cfg, hcfg, one)
    write_sorted(kept, per_target, other, str(tmp_path / "one"), one)
    assert want.dropped_by_reason["cap_author"] > 0 and want.dropped_by_reason["cap_target"] > 0

    engine = PolarsEngine(spill=spill)
    msgs, hist, by_msg = prepared(engine.scan(config.table_url(T.name), T), engine.scan(config.table_url(H.name), H),
                                  engine)
    got = write_by_authors(msgs, hist, by_msg, cfg, hcfg, str(tmp_path / "many"), engine, buckets)
    assert got.summary() == want.summary()
    assert storage.read(str(tmp_path / "many")).height == want.rows_out > 1000
    assert _files(str(tmp_path / "many")) == _files(str(tmp_path / "one"))


def test_author_buckets_grow_with_the_messages():
    import polars as pl

    by_msg = pl.DataFrame({"_reason": [None, "bot_author"], "platform": ["reddit", "reddit"], "n": [900, 101]})
    assert author_buckets(by_msg, 10_000) == 1
    assert author_buckets(by_msg, 1_001) == 1 and author_buckets(by_msg, 1_000) == 2
    assert author_buckets(by_msg, 100) == 11
