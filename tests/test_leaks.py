"""The leak scanner: what survives from the raw inputs in an output table, reported without the values."""

import polars as pl

from pipelines.leaks import scan_leaks
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
