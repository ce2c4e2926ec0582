"""Privacy, end to end: nothing planted in the demo dumps survives into any anonymised output.

The demo corpus plants e-mails, phone numbers, IPs, card numbers, IBANs, profile URLs and
mentions of other authors (see pipelines/sample/ and its planted.json). Every table from
`messages_anon` on, the tokenizer and the decoded shards must be free of them, of every raw
author handle and of the secret.
"""

import json
import os
import re

import polars as pl
import pytest

from pipelines.core import config as cfgmod
from pipelines.core import storage
from pipelines.stages.anonymize import AnonymizeConfig, is_mentionable
from pipelines.core.context import RunContext
from pipelines.core.leaks import scan_leaks

ANON_TABLES = ("messages_anon", "messages_dedup", "timeline", "reading_histories", "pair_examples")


@pytest.fixture(scope="module")
def demo(demo_built):
    cfg = cfgmod.load(str(demo_built / "dumps" / "corpus.toml"))
    planted = json.loads((demo_built / "dumps" / "planted.json").read_text())
    return cfg, planted


def _strings(df: pl.DataFrame) -> list[str]:
    out = []
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            out += [v for v in df[name].to_list() if v]
        elif isinstance(dtype, pl.List) and dtype.inner == pl.String:
            out += [v for vs in df[name].to_list() if vs for v in vs if v]
    return out


def _decoded_shards(cfg) -> list[str]:
    from tokenizers import Tokenizer

    from pipelines.stages import shards as SH

    tok = Tokenizer.from_file(cfg.table_url("tokenizer.json"))
    texts = []
    for split in ("train", "validation", "test"):
        url = cfg.table_url("shards", split, "manifest.json")
        df = pl.from_arrow(SH.read_flat(url))  # the streams the loader assembles
        for col in ("window_tokens", "own_tokens", "other_tokens"):
            texts += [tok.decode(ids, skip_special_tokens=False) for ids in df[col].to_list()]
    # and the token store itself, as stored (mentions not yet resolved)
    man = json.loads(open(cfg.table_url("shards", "train", "manifest.json")).read())
    for f in man["store"]["files"]:
        store = SH.read_file(cfg.table_url("shards", "train", "manifest.json"), f)
        texts += [tok.decode(ids, skip_special_tokens=False) for ids in store.column("tokens").to_pylist()]
    return texts


def test_every_planted_pii_value_is_gone_from_every_anonymised_output(demo):
    cfg, planted = demo
    values = {p["value"].lower() for p in planted["pii"] if p["type"] != "MENTION"}
    assert len(values) >= 20, "the demo should plant a fair amount of PII"
    haystacks = {t: "\n".join(_strings(storage.read(cfg.table_url(t)))).lower() for t in ANON_TABLES}
    haystacks["shards"] = "\n".join(_decoded_shards(cfg)).lower()
    haystacks["tokenizer.json"] = open(cfg.table_url("tokenizer.json"), encoding="utf-8").read().lower()
    leaks = sorted((where, v) for where, text in haystacks.items() for v in values if v in text)
    assert leaks == [], f"{len(leaks)} planted PII values survive, e.g. {leaks[:5]}"


def test_no_author_handle_survives_as_a_word_in_text(demo):
    cfg, planted = demo
    raw = storage.read(cfg.table_url("messages"))
    for table in ANON_TABLES[:3]:
        report = scan_leaks(raw, storage.read(cfg.table_url(table)), RunContext(cfg).secret())
        assert report.passed, f"{table}: {report.description} {report.samples}"
    # The shards too: no planted handle (other than a common English word, which the mention rule
    # leaves alone by design) appears as a word in the decoded token streams.
    keys = pl.DataFrame({"n": planted["author_names"]}).with_columns(pl.col("n").str.to_lowercase().alias("k"))
    keys = keys.filter(is_mentionable(pl.col("k"), AnonymizeConfig()) & (pl.col("k").str.len_chars() >= 4))
    names = keys["n"].to_list()
    assert len(names) >= 20
    text = "\n".join(_decoded_shards(cfg)).lower()
    words = set(re.findall(r"\w+", text))
    hits = sorted(n for n in names if (n.lower() in words if re.fullmatch(r"\w+", n)
                                       else n.lower() in text  # fast pre-check before the word-boundary regex
                                       and re.search(rf"(?<!\w){re.escape(n.lower())}(?!\w)", text)))
    assert hits == [], f"{len(hits)} author names survive in the shards: {hits[:10]}"


def test_the_secret_is_in_no_output(demo):
    cfg, _ = demo
    secret = RunContext(cfg).secret().decode()
    for t in ANON_TABLES:
        assert secret not in "\n".join(_strings(storage.read(cfg.table_url(t))))
    assert secret not in open(cfg.table_url("tokenizer.json"), encoding="utf-8").read()
    for split in ("train", "validation", "test"):
        assert secret not in open(cfg.table_url("shards", split, "manifest.json")).read()


def test_pseudonyms_and_placeholders_replace_what_was_removed(demo):
    cfg, planted = demo
    anon = storage.read(cfg.table_url("messages_anon"))
    kinds = {t for ts in anon["pii_types"].to_list() for t in ts}
    assert {"EMAIL", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL", "MENTION"} <= kinds
    assert anon["author_name"].null_count() == anon.height and anon["author_aliases"].null_count() == anon.height
    assert anon.filter(pl.col("author_id").is_not_null())["author_id"].str.contains(r"^u[0-9a-f]{16}$").all()


# A private Telegram chat (its id is the peer's user id), a group where a person posts, another
# group whose leaderboard names that person in full, and a DiscordChatExporter DM file named
# after the other person: Telegram Desktop's and DCE's own JSON shapes, built here because the
# real samples have neither a personal chat nor a DM.
PEER_ID, OWNER_ID, VALIAN_ID = 4455667788, 1122334455, 9988776655
PEER, VALIAN, DM_PERSON = "Ottoline Quenby", "Valian Masdani", "Perpetua Halloway"
DM_CHANNEL, DM_PERSON_ID, DM_OTHER_ID = "1190000000000000001", "1180000000000000002", "1180000000000000003"


def _tg_messages(rows, start=1672567200):
    out = []
    for i, (who, uid, text) in enumerate(rows, 1):
        out.append({"id": i, "type": "message", "date": "2023-01-01T10:00:00", "date_unixtime": str(start + 60 * i),
                    "from": who, "from_id": f"user{uid}", "text": text,
                    **({"reply_to_message_id": i - 1} if i > 1 else {})})
    return out


def write_private_dumps(root):
    """The dumps above under ``root``; returns the raw values that must not survive past raw."""
    (root / "telegram").mkdir(parents=True)
    chats = [
        {"name": PEER, "type": "personal_chat", "id": PEER_ID, "messages": _tg_messages([
            (PEER, PEER_ID, "are you coming to the rehearsal tonight?"),
            ("Me", OWNER_ID, "yes, I will bring the sheet music"),
            (PEER, PEER_ID, "great, see you at seven then"),
            ("Me", OWNER_ID, "see you, and thanks for organising it")] * 3)},
        {"name": "Choir", "type": "private_supergroup", "id": 777001, "messages": _tg_messages([
            (VALIAN, VALIAN_ID, "the alto part in bar twelve is tricky"),
            ("Me", OWNER_ID, "slow it down and count the rests"),
            (VALIAN, VALIAN_ID, "that works much better, thank you")] * 3)},
        {"name": "Quiz night", "type": "private_group", "id": 777002, "messages": _tg_messages([
            ("Me", OWNER_ID, f"Leaderboard after round three: 1. {VALIAN} 120 points, 2. the rest"),
            (PEER, PEER_ID, "well played, the music round was hard"),
            ("Me", OWNER_ID, "next week we play the film round")] * 3)},
    ]
    (root / "telegram" / "result.json").write_text(json.dumps({"chats": {"list": chats}}), encoding="utf-8")
    (root / "discord").mkdir()
    lines = [(DM_PERSON_ID, DM_PERSON, "did you get the tickets for saturday?"),
             (DM_OTHER_ID, "Me", "yes, two seats in the second row"),
             (DM_PERSON_ID, DM_PERSON, "perfect, I will meet you at the entrance"),
             (DM_OTHER_ID, "Me", "see you there, do not be late")] * 3
    first = 1200000000000000000
    dm = {"guild": {"id": "0", "name": "Direct Messages"},
          "channel": {"id": DM_CHANNEL, "type": "DirectTextChat", "name": DM_PERSON},
          "messages": [{"id": str(first + i), "type": "Reply" if i else "Default",
                        "timestamp": f"2023-02-01T10:{i:02d}:00+00:00", "content": text,
                        "author": {"id": who, "name": name, "nickname": name, "isBot": False},
                        **({"reference": {"messageId": str(first + i - 1)}} if i else {})}
                       for i, (who, name, text) in enumerate(lines)]}
    (root / "discord" / f"Direct Messages - Private - {DM_PERSON} [{DM_CHANNEL}].json").write_text(
        json.dumps(dm), encoding="utf-8")
    return [str(PEER_ID), str(OWNER_ID), str(VALIAN_ID), DM_PERSON_ID, DM_OTHER_ID,
            *PEER.lower().split(), *VALIAN.lower().split(), *DM_PERSON.lower().split()]


def _everything(df: pl.DataFrame) -> str:
    return str(df.to_dicts()).lower()


@pytest.fixture(scope="module")
def private_build(tmp_path_factory):
    from pipelines.build import build
    from pipelines.core.config import from_dict

    root = tmp_path_factory.mktemp("private")
    secrets = write_private_dumps(root / "dumps")
    cfg = from_dict({"out": str(root / "out"), "tokenizer": {"vocab_size": 300},
                     "sources": [{"format": "telegram", "paths": [str(root / "dumps" / "telegram" / "result.json")]},
                                 {"format": "discord", "paths": [str(root / "dumps" / "discord" / "*.json")]}]},
                    base_dir=str(root))
    summary = build(RunContext(cfg, secret_value="private-build-secret"))
    return cfg, summary, secrets


@pytest.mark.slow
def test_private_chat_ids_dm_file_names_and_full_names_are_gone_past_raw(private_build):
    cfg, summary, secrets = private_build
    raw = storage.read(cfg.table_url("messages"))
    assert all(s in _everything(raw) for s in secrets)  # planted: the raw tier has them all
    assert summary["anonymize"]["private_scopes"] >= 1 and summary["shards"]["rows_out"] > 0
    for table in ANON_TABLES:
        blob = _everything(storage.read(cfg.table_url(table)))
        assert [s for s in secrets if s in blob] == [], table
    for split in ("train", "validation", "test"):
        manifest = json.loads(open(cfg.table_url("shards", split, "manifest.json")).read())
        for shard in manifest["shards"] + manifest["store"]["files"]:  # example files and token store
            blob = _everything(pl.read_parquet(os.path.normpath(cfg.table_url("shards", split, shard["path"]))))
            assert [s for s in secrets if s in blob] == [], (split, shard["path"])
        assert [s for s in secrets if s in json.dumps(manifest).lower()] == [], split
    for table in ANON_TABLES[:3]:
        report = scan_leaks(raw, storage.read(cfg.table_url(table)), b"private-build-secret")
        assert report.passed, f"{table}: {report.description} {report.samples}"


@pytest.mark.slow
def test_hashed_private_ids_still_join_threads_and_replies(private_build):
    cfg, _, _ = private_build
    anon = storage.read(cfg.table_url("messages_anon"))
    tg = anon.filter(pl.col("platform") == "telegram")
    private = tg.filter(pl.col("community").str.contains(r"^telegram:p[0-9a-f]{16}$"))
    assert private.height == 12 and private["thread_id"].n_unique() == 1
    assert (private["community"] == private["thread_id"]).all()
    # every reply points at a message of the same (hashed) chat that exists
    replies = private.filter(pl.col("parent_id").is_not_null())
    assert replies.height == 11 and replies["parent_id"].is_in(private["message_id"].implode()).all()
    # groups embed no person: their ids stay readable
    assert set(tg["community"]) - set(private["community"]) == {"telegram:777001", "telegram:777002"}
    timeline = storage.read(cfg.table_url("timeline"))
    assert timeline.filter(pl.col("thread_id") == private["thread_id"][0]).height == 12
