"""Regression tests for issue #11: each one is a defect seen in the issue or found by
tests/test_fuzz_readers.py, on a real sample record with the one bad value put back in.

Invariant behind all of them: one bad record becomes one quarantine row (or a message with the
bad optional value left null) and the rest of the file is still read; nothing raises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines.stages import ingest as ingest_mod

from pipelines.core import storage
from pipelines.sources import Quarantined, get_reader
from pipelines.sources.base import guarded, iso_micros, parse_iso_utc
from schemas import MESSAGES as M

OUT_OF_RANGE_ISO = "9999-12-31T23:59:59-05:00"  # year 10000 once taken to UTC


def read(fmt: str, paths) -> list:
    r = get_reader(fmt)
    return [o for unit in r.units([str(p) for p in paths]) for o in r.read_unit(unit)]


def reasons(outcomes) -> list[str]:
    return [o.reason if isinstance(o, Quarantined) else "message" if isinstance(o, dict) else "skip"
            for o in outcomes]


def real_json(real, rel):
    return json.loads((real / rel).read_bytes())


# --- the shared time parser ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [OUT_OF_RANGE_ISO, "0001-01-01T00:00:00+05:00"])
def test_an_iso_time_outside_the_datetime_range_in_utc_is_unreadable_not_an_error(value):
    assert parse_iso_utc(value) is None and iso_micros(value) is None


def test_the_largest_representable_utc_time_still_parses():
    assert iso_micros("9999-12-31T23:59:59Z") == 253_402_300_799_000_000


# --- Reddit ----------------------------------------------------------------------------------------

def _reddit_lines(real) -> list[dict]:
    return [json.loads(x) for x in (real / "reddit" / "paul-e_test_comments.ndjson").read_bytes().splitlines()]


def _write_lines(path: Path, lines) -> Path:
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    return path


@pytest.mark.parametrize("score", ["1e400", "-1e400", "NaN", 1e300, 2**64 - 1])
def test_reddit_score_beyond_int64_is_a_null_score_not_a_crash(real, tmp_path, score):
    lines = _reddit_lines(real)[:3]
    lines[1]["score"] = score
    out = read("reddit", [_write_lines(tmp_path / "c.ndjson", lines)])
    assert reasons(out) == ["message"] * 3
    assert out[1][M.score] is None and out[0][M.score] == lines[0]["score"]


def test_reddit_created_utc_of_1e400_is_bad_time(real, tmp_path):
    lines = _reddit_lines(real)[:2]
    lines[0]["created_utc"] = "1e400"
    out = read("reddit", [_write_lines(tmp_path / "c.ndjson", lines)])
    assert reasons(out) == ["bad_time", "message"]


def test_reddit_huge_score_survives_ingest_into_parquet(real, tmp_path):
    lines = _reddit_lines(real)[:3]
    lines[2]["score"] = 2**64 - 1  # orjson reads it as an int, which no int64 column holds
    path = _write_lines(tmp_path / "c.ndjson", lines)
    stats = ingest_mod.ingest("reddit", [str(path)], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.quarantined) == (3, 3, 0)
    assert storage.read(str(tmp_path / "m"))[M.score].to_list()[2] is None


# --- Reddit partitions: build and ingest agree ----------------------------------------------------

def _build_ingest(tmp_path, paths):
    from pipelines.core.config import from_dict
    from pipelines.core.context import RunContext

    cfg = from_dict({"out": str(tmp_path / "out"), "sources": [{"format": "reddit", "paths": paths}]},
                    base_dir=str(tmp_path))
    return cfg, ingest_mod.ingest_source(RunContext(cfg, secret_value="x"), cfg.sources[0].name)


@pytest.mark.parametrize("name,data,reason", [
    ("adhoc.zst", b"", "empty_file"),
    ("adhoc-garbage.zst", b"this is not zstd data at all", "corrupt"),
    ("adhoc-empty-frame.zst", zstandard.ZstdCompressor().compress(b""), "empty_file"),
])
def test_build_files_a_dateless_broken_reddit_dump_under_the_first_month_and_quarantines_it(
        real, tmp_path, name, data, reason):
    from pipelines.core.partitions import UNDATED_MONTH, month_of_file

    bad = tmp_path / name
    bad.write_bytes(data)
    assert month_of_file(str(bad)) == UNDATED_MONTH
    good = str(real / "reddit" / "RC_2005-12.zst")
    cfg, summary = _build_ingest(tmp_path, [good, str(bad)])
    months = {m["month"]: m for m in summary["months"]}
    assert set(months) == {UNDATED_MONTH, "2005-12"}
    assert months[UNDATED_MONTH]["quarantined_by_reason"] == {reason: 1}
    assert months["2005-12"]["messages"] == 1075
    # `socialcorpus ingest` says the same about the file.
    stats = ingest_mod.ingest("reddit", [str(bad)], str(tmp_path / "m"), str(tmp_path / "q"))
    assert stats.quarantined_by_reason == {reason: 1} and stats.records == 1


def test_the_undated_month_is_a_dagster_partition():
    from dagster_project.partitions import REDDIT_MONTHS
    from pipelines.core.partitions import UNDATED_MONTH

    assert REDDIT_MONTHS.get_first_partition_window().start.strftime("%Y-%m") == UNDATED_MONTH


def test_a_garbage_first_line_does_not_hide_the_month_of_the_next(real, tmp_path):
    from pipelines.core.partitions import month_of_file

    lines = (real / "reddit" / "paul-e_test_comments.ndjson").read_bytes()
    path = tmp_path / "export.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"{not json\n" + b'{"created_utc": 1e400}\n' + lines))
    assert month_of_file(str(path)) == "2024-02"


# --- Stack Exchange ---------------------------------------------------------------------------------

def test_stackexchange_creation_date_out_of_range_in_utc_is_bad_time(real, tmp_path):
    site = tmp_path / "history.stackexchange.com"
    site.mkdir()
    posts = (real / "stackexchange" / "Posts.xml").read_text("utf-8-sig").splitlines()
    rows = [line for line in posts if line.strip().startswith("<row")][:3]
    rows[1] = rows[1].replace('CreationDate="', f'CreationDate="{OUT_OF_RANGE_ISO}" Old="', 1)
    (site / "Posts.xml").write_text("<posts>\n" + "\n".join(rows) + "\n</posts>\n", "utf-8")
    out = read("stackexchange", [site])
    assert reasons(out) == ["message", "bad_time", "message"]


def test_stackexchange_score_beyond_int64_is_null(real, tmp_path):
    site = tmp_path / "history.stackexchange.com"
    site.mkdir()
    posts = (real / "stackexchange" / "Posts.xml").read_text("utf-8-sig").splitlines()
    row = next(line for line in posts if line.strip().startswith("<row"))
    (site / "Posts.xml").write_text("<posts>\n" + row.replace('Score="', 'Score="9' * 1 + "9" * 30, 1)
                                    + "\n</posts>\n", "utf-8")
    [msg] = read("stackexchange", [site])
    assert msg[M.score] is None


# --- Discourse -----------------------------------------------------------------------------------

def _discourse_page(real, tmp_path, change) -> list:
    page = real_json(real, "discourse/t_2108_posts_pn_5.json")
    page["post_stream"]["posts"] = page["post_stream"]["posts"][:3]
    change(page["post_stream"]["posts"][1])
    folder = tmp_path / "forum.example.org"
    folder.mkdir()
    (folder / "t.json").write_text(json.dumps(page))
    return read("discourse", [folder / "t.json"])


def test_discourse_actions_summary_that_is_not_a_list_gives_no_score(real, tmp_path):
    out = _discourse_page(real, tmp_path, lambda p: p.update(actions_summary=5))
    assert reasons(out) == ["message"] * 3 and out[1][M.score] is None


def test_discourse_created_at_out_of_range_in_utc_is_bad_time(real, tmp_path):
    out = _discourse_page(real, tmp_path, lambda p: p.update(created_at=OUT_OF_RANGE_ISO))
    assert reasons(out) == ["message", "bad_time", "message"]


def test_discourse_version_beyond_int64_is_null(real, tmp_path):
    out = _discourse_page(real, tmp_path, lambda p: p.update(version=2**64 - 1))
    assert reasons(out) == ["message"] * 3 and out[1][M.revision] is None


# --- Diplomacy -----------------------------------------------------------------------------------

def _dialog(real) -> dict:
    first = (real / "diplomacy" / "train.jsonl").read_bytes().split(b"\n", 1)[0]
    return json.loads(first)


def test_diplomacy_year_too_long_for_int64_stays_a_string(real, tmp_path):
    d = _dialog(real)
    d["years"][0] = "99999999999999999999999"
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(d) + "\n")
    out = read("diplomacy", [path])
    assert reasons(out) == ["message"] * len(d["messages"])
    assert json.loads(out[0][M.extra])["year"] == "99999999999999999999999"


@pytest.mark.parametrize("game_id", ["²", "--5", 2**64 - 1])
def test_diplomacy_game_id_that_is_no_int64_quarantines_the_line(real, tmp_path, game_id):
    d = _dialog(real)
    d["game_id"] = game_id
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(d) + "\n" + json.dumps(_dialog(real)) + "\n")
    out = read("diplomacy", [path])
    assert reasons(out) == ["wrong_type"] + ["message"] * len(d["messages"])


def test_diplomacy_message_index_beyond_int64_quarantines_the_element(real, tmp_path):
    d = _dialog(real)
    d["absolute_message_index"][1] = 2**64 - 1
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(d) + "\n")
    out = read("diplomacy", [path])
    assert reasons(out) == ["message", "wrong_type"] + ["message"] * (len(d["messages"]) - 2)


# --- Discord ---------------------------------------------------------------------------------------

DCE = "discord/dce-frontend-example-guild/Example guild - Text Channels - general [1012224565567721552].json"


def _dce(real, tmp_path, change) -> list:
    doc = real_json(real, DCE)
    doc["messages"] = [m for m in doc["messages"] if m["type"] == "Default"][:3]
    change(doc["messages"][1])
    path = tmp_path / "general [1].json"
    path.write_text(json.dumps(doc))
    return read("discord", [path])


@pytest.mark.parametrize("field", ["attachments", "embeds", "stickers", "reactions"])
def test_discord_list_fields_that_are_numbers_are_absent(real, tmp_path, field):
    out = _dce(real, tmp_path, lambda m: m.update({field: 5}))
    assert reasons(out) == ["message"] * 3


def test_discord_timestamp_out_of_range_in_utc_is_bad_time(real, tmp_path):
    out = _dce(real, tmp_path, lambda m: m.update(timestamp=OUT_OF_RANGE_ISO))
    assert reasons(out) == ["message", "bad_time", "message"]


def test_discord_author_name_that_is_not_a_string_is_not_a_name(real, tmp_path):
    out = _dce(real, tmp_path, lambda m: m["author"].update(nickname=["x"], name=5))
    assert reasons(out) == ["message"] * 3 and out[1][M.author_name] is None


def test_discord_reaction_counts_beyond_int64_give_a_null_score(real, tmp_path):
    out = _dce(real, tmp_path, lambda m: m.update(reactions=[{"count": 2**62}, {"count": 2**62}]))
    assert reasons(out) == ["message"] * 3 and out[1][M.score] is None


# --- Telegram (the shared time parser) --------------------------------------------------------------

def test_telegram_date_out_of_range_in_utc_is_bad_time(real, tmp_path):
    chat = real_json(real, "telegram/tg2md_result.json")
    i = next(i for i, m in enumerate(chat["messages"]) if m.get("type") == "message")
    chat["messages"][i].pop("date_unixtime", None)
    chat["messages"][i]["date"] = OUT_OF_RANGE_ISO.replace("-05:00", "") + "-05:00"
    path = tmp_path / "result.json"
    path.write_text(json.dumps(chat))
    out = read("telegram", [path])
    assert reasons(out)[i] == "bad_time" and len(out) == len(chat["messages"])


# --- the safety nets -------------------------------------------------------------------------------

def test_guarded_turns_a_conversion_error_into_a_bad_value_row_naming_record_and_exception():
    q = guarded(lambda: int("not a number"), "dump.ndjson", 7, {"score": "x"}, byte_offset=120)
    assert isinstance(q, Quarantined) and q.reason == "bad_value"
    assert (q.source_uri, q.source_record, q.byte_offset) == ("dump.ndjson", 7, 120)
    assert "ValueError" in q.detail and '"score"' in q.row("reddit")["excerpt"]


def test_a_row_the_schema_rejects_is_a_quarantine_row_and_the_rest_of_the_batch_is_kept(real):
    rows = read("reddit", [real / "reddit" / "paul-e_test_comments.ndjson"])[:9]
    rows[4] = {**rows[4], M.score: 2**70}
    rows[7] = {**rows[7], M.text: None}  # a required column
    quarantine: list[dict] = []
    table = ingest_mod._rows_to_table(rows, "reddit", quarantine)
    assert table.num_rows == 7
    assert [(q["source_record"], q["reason"]) for q in quarantine] == [(4, "wrong_type"), (7, "wrong_type")]
    assert table.column(M.source_record).to_pylist() == [0, 1, 2, 3, 5, 6, 8]


def test_ingest_counts_the_message_rows_it_wrote(real, tmp_path):
    lines = _reddit_lines(real)[:5]
    path = tmp_path / "c.ndjson"
    path.write_bytes(b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b"{broken\n")
    stats = ingest_mod.ingest("reddit", [str(path)], str(tmp_path / "m"), str(tmp_path / "q"))
    written = sum(pq.ParquetFile(f).metadata.num_rows for f in storage.dataset_files(str(tmp_path / "m")))
    assert (stats.records, stats.messages, stats.quarantined) == (6, 5, 1) and written == stats.messages


def test_a_quarantine_excerpt_with_a_lone_surrogate_is_still_writable():
    row = Quarantined("f", "bad_value", "detail \ud800", source_record=0, excerpt="text \udcff").row("irc")
    from schemas import QUARANTINE

    QUARANTINE.conform(pa.Table.from_pylist([row], schema=QUARANTINE.arrow))
    assert row["excerpt"].startswith("text ")


@pytest.mark.spark
@pytest.mark.slow
def test_spark_ingest_counts_records_and_messages_like_polars(spark, real, tmp_path):
    from pipelines.engines import spark_ingest

    lines = _reddit_lines(real)[:6]
    lines[2]["created_utc"] = "1e400"
    path = _write_lines(tmp_path / "c.ndjson", lines)
    with open(path, "ab") as f:
        f.write(b"{broken\n")
    polars = ingest_mod.ingest("reddit", [str(path)], str(tmp_path / "pm"), str(tmp_path / "pq"))
    on_spark = spark_ingest.ingest(spark, "reddit", [str(path)], str(tmp_path / "sm"), str(tmp_path / "sq"))
    assert polars.summary() == on_spark.summary()
    assert (on_spark.records, on_spark.messages, on_spark.quarantined) == (7, 5, 2)


# --- Slack, Telegram, IRC (readers another helper hardens; the fuzz tests found these) ----------------

SLACK = "slack/slack-export-viewer_testarchive"


def _slack_export(real, tmp_path, channels=None, users=None) -> tuple[Path, int]:
    root = tmp_path / "workspace"
    (root / "enrique").mkdir(parents=True)
    (root / "channels.json").write_text(json.dumps(channels or real_json(real, f"{SLACK}/channels.json")))
    (root / "users.json").write_text(json.dumps(users or real_json(real, f"{SLACK}/users.json")))
    day = real_json(real, f"{SLACK}/enrique/2016-01-14.json")
    (root / "enrique" / "2016-01-14.json").write_text(json.dumps(day))
    return root, len(day)


def _slack_meta_row(o) -> bool:
    # A broken metadata entry may be a row of its own; it stands for no message.
    return isinstance(o, Quarantined) and o.source_uri.endswith(("channels.json", "users.json"))


def test_slack_channel_name_that_is_a_list_does_not_stop_the_export(real, tmp_path):
    channels = real_json(real, f"{SLACK}/channels.json")
    channels[0]["name"] = ["enrique"]
    root, n = _slack_export(real, tmp_path, channels=channels)
    out = [o for o in read("slack", [root]) if not _slack_meta_row(o)]
    assert len(out) == n and "message" in reasons(out)


def test_slack_numeric_display_name_of_a_mentioned_user_is_not_a_crash(real, tmp_path):
    users = real_json(real, f"{SLACK}/users.json")
    for u in users:
        u["profile"]["display_name"] = 5  # every user, so the mentioned one is among them
        u["name"] = True
    root, n = _slack_export(real, tmp_path, users=users)
    out = [o for o in read("slack", [root]) if not _slack_meta_row(o)]
    assert len(out) == n
    msgs = [o for o in out if isinstance(o, dict)]
    assert msgs and all(isinstance(m[M.text], str) for m in msgs)


@pytest.mark.parametrize("chats_list", [5, "abc", {"a": 1}])
def test_telegram_chats_list_that_is_not_a_list_is_one_row_for_the_file(tmp_path, chats_list):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"about": "export", "chats": {"about": "", "list": chats_list}}))
    out = read("telegram", [path])
    assert len(out) == 1 and isinstance(out[0], Quarantined)


def test_irc_day_that_does_not_exist_quarantines_its_lines(real, tmp_path):
    lines = (real / "irc/ubuntu/2013/01/02/#kubuntu.txt").read_bytes().splitlines()[:20]
    path = tmp_path / "ubuntu" / "2013" / "02" / "30" / "#kubuntu.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = read("irc", [path])
    # One row per line, or one row for the file: either way nothing is lost and nothing raises.
    assert len(out) in (sum(1 for x in lines if x.strip()), 1)
    assert all(isinstance(o, Quarantined) for o in out)


@pytest.mark.parametrize("chat_id", ["²", "--5", "١٢٣x"])
def test_telegram_chat_id_of_non_ascii_digits_is_a_row_not_a_crash(real, tmp_path, chat_id):
    chat = real_json(real, "telegram/tg2md_result.json")
    chat["id"] = chat_id  # str.isdigit() accepts "²"; int() does not
    path = tmp_path / "result.json"
    path.write_text(json.dumps(chat))
    out = read("telegram", [path])
    assert len(out) == 1 and isinstance(out[0], Quarantined)  # a chat without a usable id: one row
