"""The leak scanner: what survives from the raw inputs in an output table, reported without the values."""

import polars as pl

from pipelines.core.leaks import scan_leaks
from schemas import MESSAGES as M

SECRET = b"scanner-test-secret"


def _frame(texts, names=("Zedediah", "kn0thing"), extra=None):
    n = len(texts)
    return pl.DataFrame({
        M.message_id: [f"m{i}" for i in range(n)], M.community: ["c"] * n, M.platform: ["irc"] * n,
        M.thread_id: ["Zedediah-thread"] * n,  # structural: not scanned
        M.author_id: [f"irc:{names[i % len(names)]}" for i in range(n)],
        M.author_name: [names[i % len(names)] for i in range(n)],
        M.text: texts, M.extra: extra or [None] * n,
    })


def test_clean_output_passes():
    raw = _frame(["hello Zedediah", "kn0thing: ok"])
    out = raw.with_columns(pl.Series(M.text, ["hello <@u0123456789abcdef>", "<@u0123456789abcdef>: ok"]),
                           pl.lit("u0123456789abcdef").alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name))
    res = scan_leaks(raw, out, SECRET)
    assert res.passed and res.failed_rows == 0


def test_every_kind_of_leak_is_reported_with_column_row_and_type_but_not_the_value():
    raw = _frame(["a", "b", "c", "d", "e"])
    out = raw.with_columns(
        pl.Series(M.text, ["ZEDEDIAH said so", "write to jane@example.org", "call (415) 555-0100",
                           "key scanner-test-secret", "ok"]),
        pl.Series(M.extra, [None, None, None, None, '{"by":"kn0thing"}']),
        pl.lit(None, pl.String).alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name))
    res = scan_leaks(raw, out, SECRET)
    assert not res.passed and res.failed_rows == 5
    got = {(s["message_id"], s["column"], s["type"]) for s in res.samples}
    assert got == {("m0", M.text, "author_name"), ("m1", M.text, "email"), ("m2", M.text, "phone"),
                   ("m3", M.text, "secret"), ("m4", M.extra, "author_name")}
    blob = repr(res.as_dict())
    for raw_value in ("Zedediah", "jane@example.org", "555-0100", "scanner-test-secret", "kn0thing"):
        assert raw_value.lower() not in blob.lower()


def test_names_inside_longer_words_and_stopword_names_are_not_leaks():
    raw = _frame(["x", "y"], names=("ann", "help"))
    out = raw.with_columns(pl.Series(M.text, ["announce the plan", "please help"]),
                           pl.lit(None, pl.String).alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name))
    assert scan_leaks(raw, out).passed


def test_explicit_handle_of_a_raw_author_is_a_leak_in_any_community():
    raw = _frame(["x"])
    out = raw.with_columns(pl.lit("other").alias(M.community), pl.Series(M.text, ["ping @Zedediah"]),
                           pl.lit(None, pl.String).alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name))
    res = scan_leaks(raw, out)
    assert not res.passed and res.samples[0]["type"] == "handle"


def _telegram(thread_ids, message_ids, communities=None):
    n = len(thread_ids)
    return pl.DataFrame({
        M.message_id: message_ids, M.community: communities or thread_ids, M.platform: ["telegram"] * n,
        M.thread_id: thread_ids, M.author_id: ["user4455667788", "user1122334455"][:n] * (n // 2 or 1),
        M.author_name: ["Ottoline Quenby", "Me"][:n] * (n // 2 or 1), M.text: ["hi"] * n,
        M.recipient_ids: [["user1122334455"], ["user4455667788"]][:n] * (n // 2 or 1),
    })


def test_a_raw_user_id_inside_an_id_column_is_a_leak_reported_without_the_id():
    raw = _telegram(["telegram:4455667788"] * 2, ["telegram:4455667788:1", "telegram:4455667788:2"])
    out = raw.with_columns(pl.lit("u0123456789abcdef").alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name),
                           pl.lit(None, pl.List(pl.String)).alias(M.recipient_ids))
    res = scan_leaks(raw, out, SECRET)
    assert not res.passed and res.failed_rows == 2
    assert {(s["column"], s["type"]) for s in res.samples} == {
        (M.message_id, "user_id"), (M.thread_id, "user_id"), (M.community, "user_id")}
    assert {s["message_id"] for s in res.samples} == {"row 0", "row 1"}
    assert "4455667788" not in repr(res.as_dict())
    # shard-style list columns are scanned too
    shard = pl.DataFrame({M.message_id: ["x"], M.community: ["c"], "window_msg_ids": [["telegram:p0a1b:1",
                                                                                        "telegram:4455667788:2"]]})
    res = scan_leaks(raw, shard)
    assert not res.passed and res.samples == [{"column": "window_msg_ids", "message_id": "x", "type": "user_id"}]


def test_hashed_ids_and_a_message_number_equal_to_a_user_id_are_not_leaks():
    raw = _telegram(["telegram:4455667788"] * 2, ["telegram:4455667788:1", "telegram:4455667788:2"])
    out = raw.with_columns(pl.lit("telegram:p00112233aabbccdd").alias(M.thread_id),
                           pl.lit("telegram:p00112233aabbccdd").alias(M.community),
                           # a group whose message number happens to equal the peer's id
                           pl.Series(M.message_id, ["telegram:p00112233aabbccdd:1", "telegram:777001:4455667788"]),
                           pl.lit("u0123456789abcdef").alias(M.author_id), pl.lit(None, pl.String).alias(M.author_name),
                           pl.lit(None, pl.List(pl.String)).alias(M.recipient_ids))
    res = scan_leaks(raw, out, SECRET)
    assert res.passed, res.as_dict()
