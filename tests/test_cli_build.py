"""`socialcorpus build` as a user sees it: the human summary, the JSON file and `--json`,
quiet library loggers, and help text with defaults read from the code that uses them."""

import json
import re

import pytest

from conftest import TEST_SECRET
from pipelines import cli
from pipelines.core.context import SECRET_ENV
from pipelines.sample import write_sample
from pipelines.stages import STAGES
from test_dagster_materialize import write_config


@pytest.fixture()
def telegram_config(real, tmp_path, monkeypatch):
    """A corpus of the real Telegram exports only (small: a build up to anonymize takes seconds)."""
    monkeypatch.setenv(SECRET_ENV, TEST_SECRET)
    return write_config(tmp_path / "corpus.toml", tmp_path / "out",
                        [{"format": "telegram", "paths": [f"{real}/telegram/*.json"]}]), tmp_path / "out"


def test_build_prints_a_stage_table_and_writes_the_full_json_to_a_file(telegram_config, capsys):
    cfg, out = telegram_config
    assert cli.main(["build", "--config", cfg, "--until", "dedup"]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "build_summary.json").read_text())
    ingest, dedup = summary["ingest"], summary["dedup"]
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("ingest ", "dedup "))}
    assert rows["ingest"][1:3] == [f"{ingest['records']:,}", f"{ingest['messages']:,}"]
    assert rows["dedup"][1:3] == [f"{dedup['rows_in']:,}", f"{dedup['rows_out']:,}"]
    # each stage's peak resident memory, in the JSON and as the table's last column
    assert all(summary[s]["peak_rss_mb"] > 10 for s in ("ingest", "dedup"))
    assert rows["dedup"][-1] == f"{dedup['peak_rss_mb']:,.0f}" and "peak MB" in text
    q = ingest["quarantined"]
    assert (f"quarantine: {q:,} records" if q else "quarantine: empty") in text
    assert f"full summary (JSON): {out / 'build_summary.json'}" in text
    assert "stopped after dedup: no shards built in this run" in text
    assert not text.lstrip().startswith("{")


def test_build_json_flag_keeps_the_machine_readable_stdout(telegram_config, tmp_path, capsys):
    cfg, out = telegram_config
    elsewhere = tmp_path / "reports" / "run.json"
    assert cli.main(["build", "--config", cfg, "--until", "ingest", "--json", "--summary-file", str(elsewhere)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(elsewhere.read_text())
    assert printed["ingest"]["records"] == printed["ingest"]["messages"] + printed["ingest"]["quarantined"] \
        + printed["ingest"]["skipped"]
    assert not (out / "build_summary.json").exists()


@pytest.mark.slow
def test_verbose_build_logs_our_progress_but_not_presidio_per_message(telegram_config, capsys, monkeypatch):
    from pipelines.stages import anonymize

    cfg, _ = telegram_config
    # A fresh Presidio engine in each run: building one is where Presidio logs ("Loaded recognizer").
    monkeypatch.setattr(anonymize, "_PII_ENGINES", {})
    assert cli.main(["-v", "build", "--config", cfg, "--until", "anonymize", "--json"]) == 0
    err = capsys.readouterr().err
    assert "stage anonymize: done" in err and "ingest telegram:" in err
    assert "presidio-analyzer" not in err and "Skipping context extraction" not in err
    # Asked for (-vv), the libraries' INFO lines do come through: the filter is what hides them.
    monkeypatch.setattr(anonymize, "_PII_ENGINES", {})
    assert cli.main(["-vv", "build", "--config", cfg, "--until", "anonymize", "--json"]) == 0
    assert "presidio-analyzer" in capsys.readouterr().err


def _options(parser):
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        for a in p._actions:
            if a.option_strings and a.dest != "help":
                yield name, p, a


@pytest.mark.parametrize("make_parser", [cli.parser, "trainer"], ids=["socialcorpus", "train-evaluate"])
def test_every_flag_has_help_and_shows_its_default(make_parser):
    if make_parser == "trainer":
        from trainer import cli as trainer_cli

        make_parser = trainer_cli.parser
    for name, p, a in _options(make_parser()):
        assert a.help, f"{name} {a.option_strings[0]} has no help text"
        if a.default is not None and a.default is not False and not a.required:
            help_text = p.format_help()
            flag = re.escape(a.option_strings[-1])
            assert re.search(rf"{flag}.*?default", help_text, re.S), f"{name} {a.option_strings[-1]} hides its default"


def test_defaults_come_from_the_code_not_retyped():
    import inspect

    p = cli.parser()
    args = p.parse_args(["sample", "--out", "x"])
    sig = inspect.signature(write_sample).parameters
    assert (args.seed, args.scale) == (sig["seed"].default, sig["scale"].default)
    build = p.parse_args(["build", "--config", "c.toml"])
    assert build.until is None
    with pytest.raises(SystemExit):
        p.parse_args(["build", "--config", "c.toml", "--until", "no-such-stage"])
    assert [st.name for st in STAGES] == [c for c in _until_choices(p)]


def _until_choices(p):
    for name, _, a in _options(p):
        if name == "build" and a.dest == "until":
            return a.choices
    return []


def test_progress_off_a_terminal_draws_no_bar_and_logs_counts_and_rate(capsys, caplog):
    import logging

    from pipelines.core.progress import progress

    with caplog.at_level(logging.INFO, logger="socialcorpus"):
        with progress("ingest x", logging.getLogger("socialcorpus.test"), total=30, unit="records", every_s=0) as p:
            for _ in range(3):
                p.update(10, quarantined=1)
    # pytest's stderr is not a terminal: no bar (tqdm redraws with \r); log lines, if a handler is set, only.
    assert "\r" not in capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"ingest x: 10/30 records \([\d,]+ records/s\), quarantined 1", lines[0])
    assert re.fullmatch(r"ingest x: 30/30 records \([\d,]+ records/s\) in \d+\.\ds", lines[-1])


def test_progress_on_a_terminal_draws_a_bar_on_stderr(capsys):
    from pipelines.core.progress import progress

    with progress("write train shards", total=4, unit="rows", bar=True) as p:
        p.update(4, files=1)
    err = capsys.readouterr().err
    assert "\r" in err and "write train shards" in err and "4/4" in err and "files=1" in err


def test_the_summary_maps_each_stage_to_the_dagster_asset_that_runs_it():
    from dagster_project.definitions import defs
    from pipelines.report import STAGE_ASSETS

    declared = {}
    for a in defs.resolve_all_asset_specs():
        if "stage" in a.metadata:
            declared[a.metadata["stage"]] = a.key.to_user_string()
    assert declared == STAGE_ASSETS
