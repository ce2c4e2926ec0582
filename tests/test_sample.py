"""`socialcorpus sample`: the demo corpus is written in each format's real layout, every format
ingests with zero unexpected quarantines, and every planted broken record is quarantined
with the reason it was planted for."""

from __future__ import annotations

import filecmp
import json
import os
import re
import zipfile
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import zstandard

from pipelines.core import config as cfgmod
from pipelines.stages.ingest import ingest
from pipelines.sample import iban, luhn_ok, write_sample
from pipelines.sources import FORMATS
from schemas import MESSAGES as M
from schemas import QUARANTINE as Q


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample")
    return out, write_sample(str(out), seed=0, scale=1)


@pytest.fixture(scope="module")
def planted(sample) -> dict:
    return json.loads((sample[0] / "planted.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def ingested(sample, tmp_path_factory) -> dict:
    """Every configured source of the demo corpus ingested: {format: (stats, messages, quarantine)}."""
    root, _ = sample
    cfg = cfgmod.load(str(root / "corpus.toml"))
    tables = tmp_path_factory.mktemp("tables")
    out = {}
    for src in cfg.sources:
        stats = ingest(src.format, src.paths, str(tables / "m" / src.name), str(tables / "q" / src.name))
        out[src.format] = (stats, pl.read_parquet(tables / "m" / src.name),
                           pl.read_parquet(tables / "q" / src.name))
    return out


def _rel(root: Path, uri: str) -> str:
    # Slack zip members are reported as `zip://member::archive`: the archive is the file.
    path = uri.split("::")[-1].split("://", 1)[-1]
    return os.path.relpath(path, root).replace(os.sep, "/")


def test_every_format_is_written_in_its_real_layout(sample):
    root, summary = sample
    assert set(summary["files"]) == set(FORMATS)
    for rel in ("reddit/RC_2021-03.zst", "reddit/RC_2021-04.zst", "reddit/RS_2021-03.zst",
                "stackexchange/sourdough.stackexchange.com/Posts.xml", "diplomacy/train.jsonl",
                "slack/makerspace/channels.json", "slack/makerspace/users.json", "telegram/result.json",
                "telegram/ChatExport_2020-11-20/result.json", "irc/libera/2022/05/02/#homelab.txt"):
        assert (root / rel).is_file(), rel
    for name in ("Posts", "Comments", "Users"):
        head = (root / f"stackexchange/sourdough.stackexchange.com/{name}.xml").read_bytes()[:120]
        assert head.startswith(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE ')
    assert list((root / "discourse").glob("*/t_*_posts_pn_21.json"))
    assert len(list((root / "discord").glob("* - * - * [[]*[]]*.json"))) >= 4
    (zip_path,) = (root / "slack").glob("*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "channels.json" in names and "users.json" in names
    assert any(re.fullmatch(r"[a-z-]+/\d{4}-\d\d-\d\d\.json", n) for n in names)
    day_files = [f for f in (root / "slack/makerspace").glob("*/*.json")
                 if re.fullmatch(r"\d{4}-\d\d-\d\d\.json", f.name)]  # not the planted broken `<day>-2.json`
    slack = [m for f in day_files for m in json.loads(f.read_text("utf-8"))]
    assert any(m.get("subtype") == "tombstone" for m in slack)
    assert any(m.get("subtype") == "bot_message" and "user" not in m for m in slack)
    assert any(m.get("thread_ts") and m["thread_ts"] != m["ts"] for m in slack)
    new = json.loads((root / "telegram/result.json").read_text("utf-8"))
    old = json.loads((root / "telegram/ChatExport_2020-11-20/result.json").read_text("utf-8"))
    assert all(isinstance(m.get("from_id", ""), str) for m in new["messages"] if m["type"] == "message")
    assert all(isinstance(m["from_id"], int) for m in old["messages"] if m["type"] == "message")
    assert any(isinstance(m["text"], list) for m in new["messages"])
    assert any("date_unixtime" in m for m in new["messages"]) and not any("date_unixtime" in m for m in old["messages"])


def test_reddit_dumps_need_the_long_window_like_pushshift(sample):
    data = (sample[0] / "reddit/RC_2021-03.zst").read_bytes()
    params = zstandard.get_frame_parameters(data)
    assert params.window_size == 2**31
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN and params.has_checksum
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(data).read()
    lines = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(data).read().splitlines()
    assert len(lines) > 100


def test_reddit_lines_vary_like_real_eras(sample):
    dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
    types = Counter()
    text = b""
    records: dict[str, dict[str, dict]] = {}
    for name in ("RC_2021-03.zst", "RC_2021-04.zst", "RS_2021-04.zst"):
        raw = dctx.stream_reader((sample[0] / "reddit" / name).read_bytes()).read()
        text += raw
        records[name] = {}
        for line in raw.splitlines():
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            types[type(obj.get("created_utc")).__name__] += 1
            records[name][obj.get("id")] = obj
    assert {"int", "float", "str"} <= set(types)
    march, april = records["RC_2021-03.zst"], records["RC_2021-04.zst"]
    across = [c for i, c in april.items() if i not in march and c.get("parent_id", "")[3:] in march]
    assert len(across) >= 2  # replies whose parent is in the previous month's file
    recrawled = [i for i in april if i in march]
    assert recrawled and all(april[i]["_meta"]["retrieved_2nd_on"] > march[i]["retrieved_on"] for i in recrawled)
    for needle in (b'"[deleted]"', b'"[removed]"', b"&amp;", b"\\r\\n", b"crosspost_parent_list", b"AutoModerator",
                   b'"t1_', b'"t3_'):
        assert needle in text, needle


def test_every_format_conserves_its_records(ingested):
    for fmt in FORMATS:
        stats = ingested[fmt][0]
        assert stats.records == stats.messages + stats.quarantined + stats.skipped, fmt
        assert stats.messages > 50, fmt


def test_quarantine_holds_exactly_the_planted_broken_records(sample, ingested, planted):
    root = sample[0]
    seen = Counter()
    for fmt in FORMATS:
        for row in ingested[fmt][2].iter_rows(named=True):
            seen[(fmt, _rel(root, row[Q.source_uri]), row[Q.reason])] += 1
    expected = Counter((b["format"], b["file"], b["reason"]) for b in planted["broken"])
    assert seen == expected
    assert {b["format"] for b in planted["broken"]} == set(FORMATS)


def test_system_events_are_skipped_by_policy_not_quarantined(ingested):
    for fmt in ("discourse", "discord", "slack", "telegram", "irc"):
        assert ingested[fmt][0].skipped > 0, fmt


def test_planted_pii_is_valid_and_reaches_the_message_text(ingested, planted):
    texts = {fmt: "\n".join(ingested[fmt][1][M.text].to_list()) for fmt in FORMATS}
    kinds = Counter(p["type"] for p in planted["pii"])
    for typ in ("EMAIL", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL", "MENTION", "NAME"):
        assert kinds[typ] > 0, typ
    missing = [p for p in planted["pii"] if p.get("shown_as", p["value"]) not in texts[p["format"]]
               and not p["file"].endswith("RC_2021-05.zst")]  # the truncated file loses its tail
    assert not missing
    for p in planted["pii"]:
        if p["type"] == "CREDIT_CARD":
            assert luhn_ok(p["value"]), p
        if p["type"] == "IBAN":
            assert iban(p["value"][:2], p["value"][4:]) == p["value"], p


def test_planted_author_names_cover_every_author(ingested, planted):
    names = set(planted["author_names"]) | set(planted["bot_names"])
    for fmt in FORMATS:
        if fmt == "diplomacy":  # authors are the seven powers, not people
            continue
        authors = set(ingested[fmt][1][M.author_name].drop_nulls().to_list())
        assert authors and authors <= names, (fmt, sorted(authors - names)[:5])


def test_planted_duplicates_are_in_the_ingested_tables(ingested, planted):
    counts = Counter()
    for fmt in FORMATS:
        counts.update(ingested[fmt][1][M.message_id].to_list())
    assert len(planted["near_duplicates"]) >= 4
    for cluster in planted["near_duplicates"]:
        assert len(cluster["message_ids"]) >= 2
        assert all(counts[m] >= 1 for m in cluster["message_ids"]), cluster
    assert {d["format"] for d in planted["record_duplicates"]} >= {"reddit", "discord", "discourse"}
    for dup in planted["record_duplicates"]:
        assert counts[dup["message_id"]] == dup["copies"], dup


def test_corpus_toml_configures_every_format_with_a_demo_secret(sample, monkeypatch):
    from pipelines.core.context import SECRET_ENV, RunContext

    cfg = cfgmod.load(str(sample[0] / "corpus.toml"))
    assert sorted(s.format for s in cfg.sources) == sorted(FORMATS)
    assert cfg.out == str(sample[0] / "out")
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert RunContext(cfg).secret() == cfg.sections["anonymize"]["demo_secret"].encode()
    assert "DEMO-ONLY" in (sample[0] / "corpus.toml").read_text()
    assert cfg.section("tokenizer").vocab_size == 4000  # the stages accept the demo settings


def test_same_seed_gives_identical_bytes_and_another_seed_differs(sample, tmp_path):
    root = sample[0]
    again, other = tmp_path / "again", tmp_path / "other"
    write_sample(str(again), seed=0, scale=1)
    write_sample(str(other), seed=1, scale=1)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(root, again, files, shallow=False)
    assert not mismatch and not errors
    assert (root / "reddit/RC_2021-03.zst").read_bytes() != (other / "reddit/RC_2021-03.zst").read_bytes()
    assert (root / "diplomacy/train.jsonl").read_bytes() != (other / "diplomacy/train.jsonl").read_bytes()


def test_scale_multiplies_the_records(sample, tmp_path):
    two = write_sample(str(tmp_path / "two"), seed=0, scale=2)
    one = sample[1]
    assert 1.6 < two["records_total"] / one["records_total"] < 2.4
    with pytest.raises(ValueError):
        write_sample(str(tmp_path / "zero"), scale=0)
