"""Anonymise: keyed pseudonyms, mentions, offline Presidio placeholders, on real samples with planted PII."""

import json
import logging

import polars as pl
import pyarrow as pa
import pytest

from pipelines.core import storage
from pipelines.stages.anonymize import (N_COMMUNITY, N_KEY, N_MENTIONABLE, N_PSEUDONYM, AnonymizeConfig, anonymize_batch,
                                 anonymize_messages, build_name_table, private_scope_candidates, pseudonym,
                                 replace_mentions, replace_mentions_reference, scope_table, source_key)
from pipelines.core.config import from_dict
from pipelines.core.context import SECRET_ENV, MissingSecretError, RunContext
from pipelines.stages.dedup import dedup_records
from pipelines.stages.ingest import ingest
from pipelines.core.leaks import scan_leaks
from pipelines.core.pii import PiiEngine
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
    assert "CandidatePhoneRecognizer" in stats["pii"]["recognizers"] and "ProfileUrlRecognizer" in stats["pii"]["recognizers"]
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
    from pipelines.stages import anonymize
    with pytest.raises(MissingSecretError, match=SECRET_ENV):
        anonymize.run(RunContext(cfg, log=logging.getLogger("test")))


def test_stage_run_writes_messages_anon_and_uses_demo_secret(tmp_path, monkeypatch, messages, caplog):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    cfg = from_dict({"out": str(tmp_path), "anonymize": {"demo_secret": "demo-only-secret"}}, base_dir=str(tmp_path))
    storage.write_table(cfg.table_url("messages"), messages.head(200), schema=RECORDS)
    from pipelines.stages import anonymize
    with caplog.at_level(logging.DEBUG):
        stats = anonymize.run(RunContext(cfg)).summary()
    out = storage.read(cfg.table_url("messages_anon"))
    assert out.height == stats["rows_out"] == 200
    assert "demo-only-secret" not in caplog.text and "demo-only-secret" not in json.dumps(stats)
    assert "demo-only-secret" not in repr(cfg.section("anonymize"))
    assert scan_leaks(messages.head(200), out, b"demo-only-secret").passed


def test_ordinary_words_as_user_names_are_mentions_only_in_explicit_forms(engine):
    """Users called "chance", "blank" and "smack" (English words by wordfreq) leave those words alone."""
    df = _gen([
        {M.author_id: "chance", M.author_name: "chance", M.text: "give it a chance, it might work"},
        {M.author_id: "blank", M.author_name: "blank", M.text: "the screen stays blank after a smack"},
        {M.author_id: "smack", M.author_name: "smack", M.text: "@chance thanks, and u/blank too"},
        {M.author_id: "ikonia", M.author_name: "ikonia", M.text: "chance: ask ikonia, he knows"},
    ])
    out, stats = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    ps = lambda a: mention(pseudonym(SECRET, "irc", a))  # noqa: E731
    assert out[M.text].to_list() == [
        "give it a chance, it might work",
        "the screen stays blank after a smack",
        f"{ps('chance')} thanks, and {ps('blank')} too",
        f"{ps('chance')}: ask {ps('ikonia')}, he knows",   # address form counts; a rare nick counts as a word
    ]
    names = build_name_table(df, SECRET).filter(pl.col("community") == "net/#chan")
    assert dict(zip(names["key"], names["mentionable"])) == {"chance": False, "blank": False, "smack": False,
                                                           "ikonia": True}


def test_a_full_display_name_is_replaced_in_another_community_of_the_platform(messages, engine):
    """A real Slack workspace member's full name, written in a Slack workspace they never posted in."""
    slack = messages.filter(pl.col(M.platform) == "slack")
    keys = build_name_table(slack, SECRET).filter(pl.col("community") == "*slack")
    assert keys.height >= 1  # full names from users.json (real_name) of the real export
    full, ps = keys["key"][0], keys["pseudonym"][0]
    written = full.title()
    other = slack.head(2).with_columns(pl.lit("slack:another-workspace").alias(M.community),
                                       (pl.col(M.message_id) + "-copy").alias(M.message_id),
                                       pl.lit(None, pl.String).alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name),
                                       pl.Series(M.text, [f"Leaderboard: 1. {written} 120 points", "the English word chance"]))
    df = pl.concat([slack, other], how="vertical_relaxed")
    out, stats = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    assert stats["names_platform_wide"] >= 1
    got = out.filter(pl.col(M.community) == "slack:another-workspace")[M.text].to_list()
    assert got == [f"Leaderboard: 1. {mention(ps)} 120 points", "the English word chance"]
    assert scan_leaks(df, out, SECRET).passed
    # the scanner looks platform-wide too: the name left in clear is reported
    leaked = out.with_columns(pl.when(pl.col(M.community) == "slack:another-workspace").then(pl.lit(written))
                              .otherwise(pl.col(M.text)).alias(M.text))
    res = scan_leaks(df, leaked, SECRET)
    assert not res.passed and {s["type"] for s in res.samples} == {"author_name"}


def _telegram_private_chat(peer: int, owner: int) -> pl.DataFrame:
    rows = [{M.author_id: f"user{peer if i % 2 == 0 else owner}", M.author_name: "Ottoline Quenby" if i % 2 == 0 else "Me",
             M.text: f"message number {i}", M.message_id: f"telegram:{peer}:{i + 1}",
             M.parent_id: f"telegram:{peer}:{i}" if i else None,
             M.recipient_ids: [f"user{owner if i % 2 == 0 else peer}"]} for i in range(6)]
    df = _gen(rows)
    return df.with_columns(pl.lit("telegram").alias(M.platform), pl.lit(f"telegram:{peer}").alias(M.community),
                           pl.lit(f"telegram:{peer}").alias(M.thread_id))


def test_a_personal_chats_peer_id_is_hashed_consistently_across_batches(engine):
    df = _telegram_private_chat(4455667788, 1122334455)
    names = build_name_table(df, SECRET)
    scopes = scope_table(private_scope_candidates(df), SECRET)
    halves = [pl.from_arrow(anonymize_batch(df.slice(a, 3).to_arrow().to_batches()[0], names, SECRET,
                                            AnonymizeConfig(), engine, scopes=scopes)) for a in (0, 3)]
    out = pl.concat(halves)
    whole, stats = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    assert out.equals(whole) and stats["private_scopes"] >= 1
    assert "4455667788" not in str(out.to_dicts()) and "1122334455" not in str(out.to_dicts())
    assert out[M.community].n_unique() == 1 and out[M.community][0].startswith("telegram:p")
    assert out[M.message_id].to_list() == [f"{out[M.community][0]}:{i}" for i in range(1, 7)]
    assert out[M.parent_id].to_list()[1:] == out[M.message_id].to_list()[:-1]   # replies still join
    other, _ = anonymize_messages(df, b"another-secret", AnonymizeConfig(), engine)
    assert other[M.community][0] != out[M.community][0]                         # keyed, not a plain hash


def test_ids_without_a_person_keep_their_readable_form_and_files_are_keyed(messages, anon):
    out, stats = anon
    assert stats["private_scopes"] == 0  # the real samples hold no private chat or DM
    for col in (M.message_id, M.thread_id, M.community, M.parent_id, M.parent_inferred):
        assert set(out[col].drop_nulls()) == set(messages[col].drop_nulls()), col
    assert out[M.source_uri].str.contains(r"^src:[0-9a-f]{16}$").all()
    uris = messages[M.source_uri].unique().to_list()
    assert set(out[M.source_uri]) == {source_key(SECRET, u) for u in uris}   # one key per file


@pytest.mark.spark
def test_spark_anonymise_equals_polars_with_private_chats_and_platform_wide_names(messages, engine, spark, tmp_path):
    """The same function on a Polars frame and on a Spark frame: same rows, same summary (the
    per-batch counters come back from the executors), same name table. The real parity build
    has no private chat: this input has a personal chat and a full name in another workspace,
    so hashed ids and platform-wide names are compared between the engines."""
    from pipelines.engines.spark import read_table, to_polars

    slack = messages.filter(pl.col(M.platform) == "slack")
    full = build_name_table(slack, SECRET).filter(pl.col("community") == "*slack")["key"][0].title()
    other = slack.head(1).with_columns(pl.lit("slack:another-workspace").alias(M.community),
                                       (pl.col(M.message_id) + "-copy").alias(M.message_id),
                                       pl.Series(M.text, [f"well done {full}, mail jo@example.org"]))
    df = pl.concat([slack, other, _telegram_private_chat(4455667788, 1122334455)], how="vertical_relaxed")
    want, stats = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    assert stats["private_scopes"] >= 1 and stats["names_platform_wide"] >= 1 and stats["presidio_strings"] >= 1
    storage.write_table(str(tmp_path / "messages"), df, schema=RECORDS)
    sdf = read_table(spark, str(tmp_path / "messages"), RECORDS).repartition(3)
    got, got_stats = anonymize_messages(sdf, SECRET, AnonymizeConfig())
    assert got_stats == stats
    assert build_name_table(sdf, SECRET).equals(build_name_table(df, SECRET))
    got = to_polars(got).select(want.columns).cast(want.schema).sort(M.message_id)
    assert got.equals(want.sort(M.message_id))


def test_private_scopes_are_the_conversations_whose_ids_name_a_person():
    rows = [  # (platform, community, thread_id, author_id, recipient_ids)
        ("slack", "slack:ws", "slack:ws:D024BE91L", "ws:U1", ["ws:U2"]),          # DM (dms.json)
        ("slack", "slack:ws", "slack:ws:mpdm-ann--bo--cy-1", "ws:U1", None),      # multi-person DM, unlisted
        ("slack", "slack:ws", "slack:ws:C0JGLMMNX", "ws:U1", None),               # channel
        ("irc", "irc:libera/#kubuntu", "irc:libera/#kubuntu:2013-01-01", "libera:ann", None),
        ("irc", "irc:libera/bo_", "irc:libera/bo_:2013-01-01", "libera:ann", None),  # query log named after a nick
        ("discord", "discord:1190000000000000001", "discord:1190000000000000001", "1180000000000000002",
         ["1180000000000000003"]),                                                 # DM: a channel snowflake
        ("telegram", "telegram:777001", "telegram:777001", "user9988776655", None),  # a group
        ("telegram", "telegram:4455667788", "telegram:4455667788", "user1122334455", ["user4455667788"]),
        ("telegram", "telegram:1292077344", "telegram:1292077344", "channel1292077344", None),  # a channel
    ]
    df = pl.DataFrame([dict(zip((M.platform, M.community, M.thread_id, M.author_id, M.recipient_ids), r)) for r in rows],
                      schema={M.platform: pl.String, M.community: pl.String, M.thread_id: pl.String,
                              M.author_id: pl.String, M.recipient_ids: pl.List(pl.String)})
    got = set(private_scope_candidates(df)["scope"])
    assert {"slack:ws:D024BE91L", "slack:ws:mpdm-ann--bo--cy-1", "irc:libera/bo_", "telegram:4455667788"} <= got
    assert not got & {"slack:ws:C0JGLMMNX", "irc:libera/#kubuntu", "telegram:777001", "telegram:1292077344",
                      "discord:1190000000000000001"}
    table = scope_table(private_scope_candidates(df), SECRET)
    assert table.filter(pl.col("scope") == "irc:libera/bo_")["hashed"].item().startswith("irc:libera/p")


def test_fast_mention_path_equals_the_slow_reference_on_real_text(messages):
    # Every real message (and its upper- and title-cased forms, for the case folding), with every
    # mentionable name of its community as a candidate, plus non-ASCII cases the fast path must
    # leave to the general regex (`ſ` folds onto `s` under re.I; `lower()` does not).
    names = build_name_table(messages, SECRET)
    lookup = dict(zip(zip(names[N_COMMUNITY].to_list(), names[N_KEY].to_list()), names[N_PSEUDONYM].to_list()))
    cands = {c: tuple(g[N_KEY].to_list()) for (c,), g in names.filter(pl.col(N_MENTIONABLE)).group_by(N_COMMUNITY)}
    rows = messages.select(M.text, M.community, M.platform).drop_nulls(M.text).iter_rows()
    cases = [(t, c, p) for text, c, p in rows if c in cands for t in (text, text.upper(), text.title())]
    comm = next(c for c in cands if any(k.isascii() and k.isalpha() and "s" in k for k in cands[c]))
    name = next(k for k in cands[comm] if k.isascii() and k.isalpha() and "s" in k)
    cases += [(f"hi {name.replace('s', 'ſ')} and {name.upper()}!", comm, "x"), (f"{name}: café {name}", comm, "x")]
    replaced = 0
    for text, community, platform in cases:
        fast = replace_mentions(text, community, platform, cands[community], lookup, SECRET)
        slow = replace_mentions_reference(text, community, platform, cands[community], lookup, SECRET)
        assert fast == slow, (community, text)
        replaced += fast[1] > 0
    assert replaced > 100 and len(cases) > 2000  # the comparison covered real replacements


def test_first_word_search_flags_the_same_rows_and_names_as_the_full_word_join(messages):
    from pipelines.stages.anonymize import _flags

    names = build_name_table(messages, SECRET)
    for col in (M.title, M.text, M.extra):
        fast = _flags(messages, col, names, all_keys=(col == M.extra), force_pii=False)
        slow = _flags(messages, col, names, all_keys=(col == M.extra), force_pii=False, reference=True)
        assert fast.equals(slow), col
        if col == M.text:  # the comparison covered rows with real name hits
            assert fast["_cands"].is_not_null().sum() > 50


def test_batches_anonymised_in_two_worker_processes_give_the_same_rows_and_counts(messages):
    """The stage's batches in two spawned workers (the Polars engine's `processes`) against the
    same batches in this process: every row, every column and every batch's counters equal."""
    import narwhals as nw

    from pipelines import engines
    from pipelines.engines.polars import PolarsEngine
    from pipelines.stages.anonymize import anonymize_frame

    def run(processes):
        cfg = AnonymizeConfig(batch_rows=100, processes=processes)
        engine = PolarsEngine(spill=True)  # its spill files live as long as it does
        out, _, _ = anonymize_frame(nw.from_native(messages.lazy()), SECRET, cfg, engine)
        return engines.to_polars(out)

    from pipelines.core import memory

    here = run(1)
    memory.worker_peak_mb(reset=True)
    workers = run(2)
    assert messages.height > 3 * 100 and memory.worker_peak_mb() > 0  # several batches: workers were started
    assert here.height == messages.height and here.equals(workers)
    assert here["_batch_stats"].drop_nulls().len() >= -(-messages.height // 100)  # a batch per slice, or per chunk
