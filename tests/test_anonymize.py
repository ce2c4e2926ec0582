"""Anonymise: keyed pseudonyms, mentions, offline Presidio placeholders, on real samples with planted PII."""

import json
import logging

import polars as pl
import pyarrow as pa
import pytest

from pipelines import storage
from pipelines.anonymize import (AnonymizeConfig, anonymize_batch, anonymize_messages, build_name_table, pseudonym)
from pipelines.config import from_dict
from pipelines.context import SECRET_ENV, MissingSecretError, RunContext
from pipelines.dedup import dedup_records
from pipelines.ingest import ingest
from pipelines.leaks import scan_leaks
from pipelines.pii import PiiEngine
from schemas import ANON, RECORDS
from schemas import MESSAGES as M
from schemas.placeholders import MENTION_RE, PLACEHOLDERS, mention
from tests.conftest import TEST_SECRET

SECRET = TEST_SECRET.encode()
SOURCES = {  # small real samples of every addressing style: u/name, @name, IRC "nick:", chat apps
    "reddit": "reddit/*.ndjson", "discord": "discord/dce-frontend-example-guild/*.json",
    "slack": "slack/slack-export-viewer_testarchive", "telegram": "telegram/*.json",
    "irc": "irc/ubuntu/2013/01/0[12]/*.txt",
}
CARD, IBAN = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32"


@pytest.fixture(scope="module")
def engine():
    return PiiEngine()


@pytest.fixture(scope="module")
def messages(real, tmp_path_factory):
    out = tmp_path_factory.mktemp("anon_real")
    for fmt, pat in SOURCES.items():
        ingest(fmt, [str(real / pat)], str(out / "messages_raw" / fmt), str(out / "quarantine" / fmt))
    df, _ = dedup_records(storage.read(str(out / "messages_raw")))
    return df


def _plant(df: pl.DataFrame) -> tuple[pl.DataFrame, list[dict]]:
    """Append PII to every 7th real message with a known author; remember what was planted."""
    known = (df.filter(pl.col(M.author_name).str.contains(r"^[A-Za-z][\w\-]{3,}$"))
             .group_by(M.community).agg(pl.col(M.author_name).sort().first(), pl.col(M.author_id).sort().first(),
                                         pl.col(M.platform).first()))
    who = {c: (n, i, p) for c, n, i, p in known.iter_rows()}
    texts, planted = df[M.text].to_list(), []
    for i, (mid, comm) in enumerate(zip(df[M.message_id], df[M.community])):
        if i % 7 or comm not in who:
            continue
        name, aid, platform = who[comm]
        n = len(planted)
        email, phone, ip = f"jane.doe{n}@example.org", f"(415) 555-{1000 + n:04d}", f"10.1.{n % 250}.7"
        url = f"https://www.reddit.com/user/{name}"
        texts[i] = (f"{texts[i]}\nmail {email} or call {phone}; server {ip}; card {CARD}; iban {IBAN}; "
                    f"profile {url} cc u/{name} and @{name}")
        planted.append({"message_id": mid, "values": [email, phone, ip, CARD, IBAN, url],
                        "pseudonym": pseudonym(SECRET, platform, aid), "name": name})
    return df.with_columns(pl.Series(M.text, texts)), planted


@pytest.fixture(scope="module")
def planted(messages):
    return _plant(messages)


@pytest.fixture(scope="module")
def anon(planted, engine):
    df, _ = planted
    return anonymize_messages(df, SECRET, AnonymizeConfig(), engine)


def test_planted_pii_in_real_messages_leaves_zero_leaks(planted, anon):
    raw, plants = planted
    out, stats = anon
    assert len(plants) > 20
    result = scan_leaks(raw, out, SECRET)
    assert result.passed, result.as_dict()
    by_id = dict(zip(out[M.message_id], out[M.text]))
    for p in plants:
        text = by_id[p["message_id"]]
        assert not any(v in text for v in p["values"]), text
        for t in ("EMAIL", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL"):
            assert PLACEHOLDERS[t] in text, (t, text)
    for t in ("EMAIL", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL"):
        assert stats["replacements"][t] >= len(plants)


def test_mentions_become_the_mentioned_authors_pseudonym(planted, anon):
    _, plants = planted
    out, _ = anon
    by_id = dict(zip(out[M.message_id], out[M.text]))
    for p in plants:
        assert by_id[p["message_id"]].endswith(f"cc {mention(p['pseudonym'])} and {mention(p['pseudonym'])}")
    # the same pseudonym is that author's author_id in the output
    assert set(p["pseudonym"] for p in plants) <= set(out[M.author_id].drop_nulls())


def test_irc_addressing_prefix_is_replaced(messages, anon):
    out, _ = anon
    nicks = set(messages.filter(pl.col(M.platform) == "irc")[M.author_name].drop_nulls().str.to_lowercase())
    raw_irc = messages.filter(pl.col(M.platform) == "irc").select(M.message_id, M.text)
    addressed = raw_irc.filter(pl.col(M.text).str.extract(r"^([^\s:,]+)[:,]\s").str.to_lowercase().is_in(nicks))
    assert addressed.height > 10
    res = out.join(addressed.select(M.message_id), on=M.message_id)
    assert res[M.text].str.contains(r"^<@u[0-9a-f]{16}>[:,]").all()


def test_authors_pseudonymised_names_dropped_pii_types_counted(messages, anon):
    out, _ = anon
    assert out[M.author_name].null_count() == out.height
    assert out[M.author_id].drop_nulls().str.contains(r"^u[0-9a-f]{16}$").all()
    assert out[M.author_id].null_count() == messages[M.author_id].null_count()
    n_tokens = out.select(pl.col(M.text).str.count_matches(r"<@u[0-9a-f]{16}>|<[A-Z_]+>").sum()
                          + pl.col(M.title).fill_null("").str.count_matches(r"<@u[0-9a-f]{16}>|<[A-Z_]+>").sum()).item()
    assert out[ANON.pii_types].list.len().sum() <= n_tokens  # one entry per replacement (real texts hold tokens too)
    assert out[ANON.pii_types].list.len().sum() > 0
    ANON.conform(out.to_arrow())


def test_same_secret_same_output_different_secret_unlinkable(planted, anon, engine):
    df, _ = planted
    again, _ = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    assert again.equals(anon[0])
    other, _ = anonymize_messages(df, b"another-secret", AnonymizeConfig(), engine)
    assert not set(other[M.author_id].drop_nulls()) & set(again[M.author_id].drop_nulls())
    mentions = lambda d: set(d[M.text].str.extract_all(MENTION_RE.pattern).explode().drop_nulls())  # noqa: E731
    assert mentions(again) and not mentions(other) & mentions(again)


def test_summary_records_recognizers_and_never_the_secret(anon):
    _, stats = anon
    assert "PhoneRecognizer" in stats["pii"]["recognizers"] and "ProfileUrlRecognizer" in stats["pii"]["recognizers"]
    assert stats["pii"]["person_names"].startswith("disabled")
    assert stats["rows_in"] == stats["rows_out"]
    assert 0 < stats["presidio_rate"] < 0.5  # the prefilter spares most messages
    assert TEST_SECRET not in json.dumps(stats)


def test_configured_but_missing_spacy_model_disables_person_names_visibly():
    eng = PiiEngine(spacy_model="no_such_spacy_pipeline")
    assert "not installed" in eng.person_names and "PERSON" not in eng.entities


def _gen(rows):
    base = {M.platform: "irc", M.community: "net/#chan", M.thread_id: "t", M.author_kind: "user",
            M.time_kind: "wall", M.time_precision: "minute", M.kind: "message", M.source_uri: "f", RECORDS.n_copies: 1}
    rows = [{**base, M.message_id: f"m{i}", M.order_in_source: i, M.source_record: i, **r} for i, r in enumerate(rows)]
    return pl.from_arrow(RECORDS.conform(pl.DataFrame(rows, infer_schema_length=None).to_arrow()))


def test_common_word_names_count_only_in_explicit_forms(engine):
    df = _gen([
        {M.author_id: "help", M.author_name: "help", M.text: "I need help"},
        {M.author_id: "bo", M.author_name: "bo", M.text: "bo: hi, ask @help or bo"},
        {M.author_id: "zed", M.author_name: "Zedediah", M.text: "zedediah is here", M.recipient_ids: ["help", "bo"]},
    ])
    out, _ = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    ps = lambda a: mention(pseudonym(SECRET, "irc", a))  # noqa: E731
    t = out[M.text].to_list()
    assert t[0] == "I need help"                                  # stopword: plain use kept
    assert t[1] == f"{ps('bo')}: hi, ask {ps('help')} or bo"      # explicit forms count, short plain name does not
    assert t[2] == f"{ps('zed')} is here"                         # display name, case-insensitive
    assert out[M.recipient_ids][2].to_list() == [pseudonym(SECRET, "irc", "help"), pseudonym(SECRET, "irc", "bo")]
    names = build_name_table(df, SECRET)
    assert not names.filter(pl.col("key") == "help")["mentionable"].item()


def test_batch_function_matches_frame_function(planted, anon, engine):
    df, _ = planted
    names = build_name_table(df, SECRET)
    batch = df.head(300).to_arrow().to_batches(max_chunksize=300)[0]
    out = anonymize_batch(batch, names, SECRET, AnonymizeConfig(), engine)
    assert isinstance(out, pa.RecordBatch) and out.schema == ANON.arrow
    assert pl.from_arrow(out).equals(pl.from_arrow(ANON.conform(anon[0].head(300).to_arrow())))


def test_missing_secret_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    cfg = from_dict({"out": str(tmp_path)}, base_dir=str(tmp_path))
    from pipelines import anonymize
    with pytest.raises(MissingSecretError, match=SECRET_ENV):
        anonymize.run(RunContext(cfg, log=logging.getLogger("test")))


def test_stage_run_writes_messages_anon_and_uses_demo_secret(tmp_path, monkeypatch, messages, caplog):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    cfg = from_dict({"out": str(tmp_path), "anonymize": {"demo_secret": "demo-only-secret"}}, base_dir=str(tmp_path))
    storage.write_table(cfg.table_url("messages"), messages.head(200), schema=RECORDS)
    from pipelines import anonymize
    with caplog.at_level(logging.DEBUG):
        stats = anonymize.run(RunContext(cfg))
    out = storage.read(cfg.table_url("messages_anon"))
    assert out.height == stats["rows_out"] == 200
    assert "demo-only-secret" not in caplog.text and "demo-only-secret" not in json.dumps(stats)
    assert "demo-only-secret" not in repr(cfg.section("anonymize"))
    assert scan_leaks(messages.head(200), out, b"demo-only-secret").passed
