"""``ingest`` converts the rows of many small units together (``iter_units_batches``) and must
give exactly what converting each unit's pieces on its own gives (``iter_unit_batches``, which
the Spark engine runs per unit): the same message rows in the same order, the same quarantine
rows in the same order, the same skips and record counts."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from pipelines.sample import write_sample
from pipelines.sources import get_reader
from pipelines.sources.base import Reader, expand_paths
from pipelines.stages import ingest
from pipelines.stages.ingest import iter_unit_batches, iter_units_batches
from schemas import MESSAGES

from benchmarks.bench_readers import SAMPLE_PATHS

REAL = {"stackexchange": ["stackexchange"], "slack": ["slack/slack-export-viewer_testarchive"],
        "discord": ["discord/*/*.json"], "telegram": ["telegram/*.json"], "discourse": ["discourse/*.json"],
        "diplomacy": ["diplomacy/train.jsonl"], "irc": ["irc"]}


def _collect(batches) -> tuple[pa.Table, list[dict], Counter, int]:
    tables, quarantine, skipped, records = [], [], Counter(), 0
    for b in batches:
        tables.append(b.messages)
        quarantine += b.quarantine
        skipped.update(b.skipped)
        records += b.records
    return pa.concat_tables(tables) if tables else MESSAGES.arrow.empty_table(), quarantine, skipped, records


def _compare(fmt: str, paths: list[str], batch_rows: int) -> int:
    units = get_reader(fmt).units(paths)
    merged = _collect(iter_units_batches(fmt, units, batch_rows))
    apart = _collect(b for u in units for b in iter_unit_batches(fmt, u, batch_rows))
    assert merged[0].equals(apart[0]), fmt
    assert merged[1:] == apart[1:], fmt
    assert merged[3] == merged[0].num_rows + len(merged[1]) + sum(merged[2].values())
    return len(units)


@pytest.fixture(scope="module")
def sample_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("merged")
    write_sample(str(root), seed=0, scale=2)
    return root


@pytest.mark.parametrize("fmt", sorted(SAMPLE_PATHS))
@pytest.mark.parametrize("batch_rows", [7, 20_000])
def test_merged_batches_equal_unit_batches_on_the_sample_and_the_real_dumps(fmt, batch_rows, sample_tree, real):
    n_units = _compare(fmt, expand_paths([str(sample_tree / p) for p in SAMPLE_PATHS[fmt]]), batch_rows)
    _compare(fmt, expand_paths([str(real / p) for p in REAL[fmt]]), batch_rows)
    if fmt == "discourse":
        assert n_units > 5  # one unit per topic: the case the merging is for


def test_a_row_the_schema_rejects_keeps_its_place_among_the_quarantine_rows(monkeypatch):
    """Rows the schema rejects are quarantined after their own piece's rows, as per unit."""
    from pipelines.sources import Quarantined

    def read_unit(paths):
        for p in paths:
            for i in range(5):
                if i == 1:
                    yield Quarantined(p, "invalid_json", f"line {i}", source_record=i)
                    continue
                score = 2**70 if (p, i) in {("b", 3), ("c", 0)} else i  # does not fit int64: the schema rejects it
                yield {"message_id": f"{p}{i}", "platform": "t", "community": "t", "thread_id": "t",
                       "author_kind": "user", "time_kind": "ordinal", "time_precision": "ordinal", "time_ordinal": i,
                       "kind": "message", "text": "x", "score": score, "source_uri": p, "source_record": i,
                       "order_in_source": i}

    test_reader = Reader(format="test", description="test", read_unit=read_unit)
    monkeypatch.setattr(ingest, "get_reader", lambda fmt: test_reader)
    units = [["a"], ["b"], ["c"], ["d"]]
    for batch_rows in (3, 7, 100):
        merged = _collect(iter_units_batches("test", units, batch_rows))
        apart = _collect(b for u in units for b in iter_unit_batches("test", u, batch_rows))
        assert merged[0].equals(apart[0]) and merged[1:] == apart[1:]
        assert [(q["source_uri"], q["reason"]) for q in merged[1]].count(("b", "wrong_type")) == 1
        assert merged[0].num_rows == 4 * 4 - 2
