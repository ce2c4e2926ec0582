"""The Polars engine writes pair_examples a slice of candidates at a time (bounded memory): the
files are byte for byte those of assembling the whole table and sorting it."""

import os

import narwhals as nw
import pytest

from pipelines.core import storage
from pipelines.engines.polars import PolarsEngine
from pipelines.stages.examples import ORDER, ExamplesConfig, assemble, example_parts, write_sorted
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
