"""StageResult (pipelines/core/results.py): what every stage returns, its conservation check, its
JSON summary entry, and the consumers that read it (the CLI table, the Dagster counts check)."""

from __future__ import annotations

import json

import pytest

from pipelines import report
from pipelines.core.results import Flow, StageResult
from pipelines.stages import STAGES, as_result
from pipelines.stages import ingest as ingest_mod


def test_a_flow_that_does_not_balance_fails_the_check_naming_the_flow():
    ok = Flow("candidates", 5, 4, {"cap_pair": 1})
    bad = Flow("messages", 10, 7, {"bot_author": 2})
    r = StageResult("examples", 10, 4, {"bot_author": 2, "cap_pair": 1}, flows=(bad, ok))
    check = r.conservation()
    assert not check.passed and check.name == "examples_counts"
    assert check.samples == ["messages"] and check.failed_rows == 1
    assert "messages: 10 in = 7 out + 2 dropped (bot_author 2); +1 unaccounted" in check.description
    assert "candidates: 5 in = 4 out + 1 dropped (cap_pair 1)" in check.description
    assert StageResult("examples", 10, 4, flows=(Flow("messages", 10, 8, {"bot_author": 2}), ok)).conservation().passed


def test_without_flows_the_rows_flow_is_checked():
    assert StageResult("dedup", 5, 3, {"duplicate_copy": 2}).conservation().passed
    check = StageResult("dedup", 5, 3, {"duplicate_copy": 1}).conservation()
    assert not check.passed and check.samples == ["rows"] and check.failed_rows == 1
    assert "rows: 5 in = 3 out + 1 dropped" in check.description


def test_summary_keys_and_the_way_back():
    r = StageResult("neardup", 7, 7, {"b": 1, "a": 0}, figures={"dropped": {}, "clusters": 2},
                    engine="polars", seconds=0.5)
    s = r.summary()
    assert list(s) == ["rows_in", "rows_out", "dropped_by_reason", "dropped", "clusters", "engine", "seconds"]
    assert list(s["dropped_by_reason"]) == ["a", "b"]  # sorted, as the JSON always had it
    back = StageResult.from_summary("neardup", json.loads(json.dumps(s)))
    assert back.summary() == s and back.engine == "polars" and back.seconds == 0.5
    assert "engine" not in StageResult("x", 1, 1).summary() and "seconds" not in StageResult("x", 1, 1).summary()
    with_peak = r.with_run(peak_rss_mb=812.5).summary()
    assert list(with_peak)[-1] == "peak_rss_mb" and with_peak["peak_rss_mb"] == 812.5
    back = StageResult.from_summary("neardup", json.loads(json.dumps(with_peak)))
    assert back.peak_rss_mb == 812.5 and "peak_rss_mb" not in back.figures and back.summary() == with_peak


def test_a_total_keeps_the_largest_part_s_peak_when_every_part_has_one():
    a, b = StageResult("ingest", 3, 3).with_run(peak_rss_mb=300.0), StageResult("ingest", 2, 2).with_run(peak_rss_mb=500.0)
    assert StageResult.total("ingest", [a, b]).peak_rss_mb == 500.0
    assert StageResult.total("ingest", [a, StageResult("ingest", 1, 1)]).peak_rss_mb is None


def test_peak_rss_is_the_stage_s_own_high_water_mark():
    from pipelines.core.memory import peak_rss_mb, reset_peak

    if not reset_peak():
        pytest.skip("this OS cannot reset the high-water mark")
    base = peak_rss_mb()
    block = bytearray(200 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page, so it is resident
    grown = peak_rss_mb()
    del block
    assert grown - base > 150, (base, grown)
    assert reset_peak() and peak_rss_mb() < grown - 150  # the mark starts again at what is resident now


def test_a_summary_with_only_the_older_dropped_key_keeps_it_as_a_figure():
    r = StageResult.from_summary("dedup", {"rows_in": 4, "rows_out": 3, "collapsed": 1,
                                           "dropped": {"duplicate_copy": 1}})
    assert r.dropped_by_reason == {"duplicate_copy": 1} and r.figures["dropped"] == {"duplicate_copy": 1}
    assert r.conservation().passed
    assert r.summary()["dropped"] == r.summary()["dropped_by_reason"]


def test_a_summary_without_counts_is_refused_naming_the_stage():
    with pytest.raises(ValueError, match="stage timeline: .*rows_in"):
        StageResult.from_summary("timeline", {"rows_out": 3})
    with pytest.raises(ValueError, match="stage tokenizer: dropped_by_reason must be a mapping"):
        StageResult.from_summary("tokenizer", {"rows_in": 3, "rows_out": 3, "dropped_by_reason": 0})
    with pytest.raises(TypeError, match="stage shards returned list"):
        as_result("shards", [1, 2])


def test_every_real_stage_returns_a_result_that_balances(real_built):
    _, summary = real_built
    built = [s.name for s in STAGES if s.available()]
    assert list(summary.results) == built
    for name, r in summary.results.items():
        assert isinstance(r, StageResult) and r.stage == name
        check = r.conservation()
        assert check.passed, (name, check.description)
        assert r.engine == "polars" and r.seconds is not None
        # the JSON build summary's entry is the result's summary, and reads back to the same counts
        assert summary[name] == r.summary()
        back = StageResult.from_summary(name, json.loads(json.dumps(summary[name], default=str)))
        assert (back.rows_in, back.rows_out, dict(back.dropped_by_reason)) == \
            (r.rows_in, r.rows_out, dict(r.dropped_by_reason))
    ing = summary.results["ingest"]
    assert [f.name for f in ing.laws()] == ["records"]
    assert ing.rows_in == ing.figures["records"] and ing.rows_out == ing.figures["messages"]
    assert ing.dropped == ing.figures["quarantined"] + ing.figures["skipped"]


def test_the_ingest_result_is_the_sum_of_its_sources_and_a_lost_row_breaks_it(real_built):
    _, summary = real_built
    sources = summary["ingest"]["sources"]
    total = StageResult.total("ingest", [ingest_mod.result_of([p]) for p in sources])
    ing = summary.results["ingest"]
    assert (total.rows_in, total.rows_out, total.dropped_by_reason) == (ing.rows_in, ing.rows_out,
                                                                         ing.dropped_by_reason)
    assert total.laws() == ing.laws() and total.conservation().passed
    lost = [dict(sources[0], messages=sources[0]["messages"] - 1), *sources[1:]]
    check = ingest_mod.result_of(lost).conservation()
    assert not check.passed and check.samples == ["records"] and check.failed_rows == 1


def test_a_stage_must_return_a_result(real_built):
    """Every stage returns a StageResult; a flat dict (the old contract) is refused, naming the stage."""
    _, summary = real_built
    d = {k: v for k, v in summary["examples"].items() if k not in ("engine", "seconds")}
    with pytest.raises(TypeError, match="stage examples returned dict"):
        as_result("examples", d)
    assert as_result("histories", summary.results["histories"]) is summary.results["histories"]
    ex = summary.results["examples"]
    assert [f.name for f in ex.laws()] == ["messages", "candidates"] and ex.conservation().passed


def test_the_cli_table_reads_the_results(real_built):
    _, summary = real_built
    rows = {r.stage: r for r in report.stage_rows(summary)}
    assert list(rows) == list(summary.results)
    for name, r in summary.results.items():
        row = rows[name]
        assert (row.rows_in, row.rows_out, row.seconds) == (r.rows_in, r.rows_out, r.seconds)
        assert row.dropped == {k: v for k, v in r.dropped_by_reason.items() if v}
    assert rows["ingest"].dropped.get("quarantined", 0) == summary["ingest"]["quarantined"]


def test_the_dagster_counts_check_reports_the_results_conservation(real_built):
    from dagster_project.results import COUNTS_CHECK, stage_result

    real_config, summary = real_built
    good = summary.results["neardup"]
    (check,) = stage_result("neardup", real_config, good).check_results
    assert check.check_name == COUNTS_CHECK and check.passed
    assert check.description == good.conservation().description
    bad = StageResult("neardup", good.rows_in, good.rows_out - 2, good.dropped_by_reason, good.figures)
    md = stage_result("neardup", real_config, bad)
    (check,) = md.check_results
    assert not check.passed and "rows:" in check.description and "+2 unaccounted" in check.description
    assert check.metadata["failed_rows"].value == 2 and check.metadata["failed_flows"].value == "rows"
    assert md.metadata["rows_out"].value == md.metadata["dagster/row_count"].value == good.rows_out - 2
