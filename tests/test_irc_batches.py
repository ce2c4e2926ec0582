"""The block reader of IRC day files (``irc.read_batches``, what ``ingest`` runs) gives the same
outcomes as the line-by-line reference (``irc.read_unit``): the same message rows column for
column, the same quarantine rows in record order and the same skips, with the channel state
(renames, inferred parents) carried across lines, batches and day files."""

from __future__ import annotations

import random
from collections import Counter

import pyarrow as pa
import pytest

from pipelines.sample import write_sample
from pipelines.sources import Quarantined, Skipped, irc
from pipelines.sources.base import MAX_TEXT_CHARS
from pipelines.stages.ingest import _rows_to_table, iter_unit_batches

# Day files of one channel, in date order: every line form, renames, addressing and odd bytes.
DAYS = {
    "2024/02/27": [
        "\ufeff[09:00] <alice> first line, after a BOM",
        "[09:01] <@bob> alice: a mode sign, and an address",
        "[09:01] <+carol> bob, comma form",
        "[09:02] <%dave> dave: self-address",
        "[09:02] <&erin> ALICE: address in another case",
        "[09:03] <~frank> nobody: nobody by that nick",
        "[09:03] <@> a mode sign and nothing else",
        "[09:03] <@ x> a space after the mode sign",
        "[09:04] <bob> alice:",
        "[09:04] <bob> alice:no space, no address",
        "[09:04] <bob> :alice leading colon",
        "[09:04] <bob> alice:: double colon",
        "[09:04] <bob> alice:\tthen a tab",
        "[09:04] <bob> alice:\u3000then an ideographic space",
        "[09:04] <bob> alice\u00a0: a no-break space in the token",
        "[09:04] <bob> zo\u00eb: a non-ASCII addressed nick",
        "[09:05] <zo\u00eb> a non-ASCII nick",
        "[09:05] <" + "n" * 15 + "> a 15-character nick",
        "[09:05] <" + "n" * 16 + "> a 16-character nick",
        "[09:05] <" + "n" * 70 + "> a 70-character nick",
        "[09:05] <bob> " + "n" * 15 + ": a 15-character address",
        "[09:05] <bob> " + "n" * 16 + ": a 16-character address",
        "[09:05] <bob> " + "m" * 70 + ": a 70-character address",
        "[09:05] <bob> " + "w" * 70 + " a long first word",
        "[09:06] <alice>",
        "[09:06] <alice> ",
        "[09:06] <alice>  two spaces before the text",
        "[09:06] <alice>no space before the text",
        "[09:06] <alice> trailing spaces   ",
        "[09:06] <alice> trailing tab\t",
        "[09:06] <alice> trailing vertical tab\x0b",
        "[09:06] <alice> trailing ideographic space\u3000",
        "[09:06] <alice> trailing no-break space \u00a0 ",
        "[09:06] <alice> ends in CJK \u4f60\u597d",
        "[09:06] <alice> a carriage return\rin the middle",
        "[09:06] <alice> CRLF\r",
        "[09:06] <alice> two CRs\r\r",
        "[09:07]  * bob waves",
        "[09:07] * bob waves with one space",
        "[09:07]  * bob",
        "[09:07]  * bob\ttab after the nick",
        "[09:07]  *  bob two spaces after the star",
        "[09:07]\t* bob a tab before the star",
        "[09:07]   * bob three spaces",
        "[09:07]  * alice: an action is never a reply",
        "=== alice is now known as alice_away",
        "=== alice_away is now known as carol_",
        "[09:08] <carol_> a renamed author keeps her first nick",
        "[09:08] <bob> carol_: a renamed target",
        "[09:08] <bob> alice_away: an intermediate nick, released",
        "=== bob is now known as Robert",
        "=== Robert is now known as robert",
        "[09:09] <robert> a case change",
        "[09:09] <bob> a new bob, after the old one left the nick",
        "[09:09] <dave> bob: the new bob",
        "[09:09] <dave> ROBERT: the old bob",
        "=== carol_ is now known as alice",
        "[09:10] <alice> back to the first nick",
        "[09:10] <dave> alice: the chain's first nick again",
        "=== dave is now known as dave",
        "=== erin is now known as frank",
        "[09:10] <frank> frank is erin now",
        "[09:10] <bob> frank: which frank",
        "=== ChanServ changed the topic of #test to: welcome",
        "=== erin [~e@host] has joined #test",
        "=== erin has left #test",
        "=== erin has quit [Ping timeout]",
        "=== erin has parted",
        "=== erin has joinedx",
        "=== netsplit",
        "===",
        "=== a is now known as b  ",
        "=== a is now known as b c",
        "[24:00] <bob> hour out of range",
        "[12:60] <bob> minute out of range",
        "[1:00] <bob> one-digit hour",
        "[\u0661\u0662:00] <bob> Arabic-Indic digits",
        "[09:11]<bob> no space after the time",
        "[09:11] <bob",
        "[09:11] <bob x> a space in the nick",
        "not an IRC line",
        "    [09:11] <bob> indented",
        "[09:11] <bob> control \x1c byte",
        "[09:11] <bo\x1fb> control byte in the nick",
        "[09:11] <b\x00b> a NUL in the nick",
        "\ufeff[09:11] <bob> a BOM on a later line",
        "[09:11] <bob> " + "x" * (MAX_TEXT_CHARS + 1),
        "[09:11] <bob> " + "\u00e9" * (MAX_TEXT_CHARS // 2 + 1),
        "[09:11] <bob> " + "x" * (MAX_TEXT_CHARS - 2) + "   ",
        "",
        "   ",
        "\t",
        "\r",
        "\x0b\x0c",
        "\u3000",
        "[09:12] <ubottu> bob: factoid",
        "[09:12] <FloodBotK1> flood",
        "[09:12] <helperbot> suffix bot",
        "[09:12] <robot_> suffix with an underscore",
        "=== dave is now known as davebot",
        "[09:12] <davebot> a user renamed to a bot nick",
    ],
    "2024/02/28": [
        "[00:00] <alice> alice on the next day",
        "[00:01] <bob> alice: across days",
        "[00:01] <dave> carol_: a released nick across days",
        "[00:02] <zo\u00eb> zo\u00eb: self-address, non-ASCII",
        "[00:02] <frank> robert: across days",
        "=== alice is now known as alice2",
        "[00:03] <bob> alice2: renamed again",
        "[00:03] <FAER48> \u043f\u0440\u0438\u0432\u0435\u0442",
        "[23:59] <alice2> last minute",
    ],
    "2024/02/30": ["[10:00] <alice> a day that does not exist"],
    "2024/03/01": [],  # an empty file
    "2024/03/02": ["", "  ", "\r"],  # blank lines only
}
RAW_DAYS = {
    "2024/03/03": b"[10:00] <alice> no newline at the end",
    "2024/03/04": (b"\xef\xbb\xbf[10:00] <alice> a BOM, CRLF and bad bytes\r\n[10:01] <bob> caf\xe9\r\n"
                   b"[10:02] <bob> alice: still here\r\n\xff\xfe\r\n[10:03] <alice\xff> bad nick\n"
                   b"=== bob is now known as b\xffob\n[10:04] <bob> after a bad rename\n"),
    "2024/03/05": b"\xef\xbb\xbf",
    "2024/03/06": b"\n\n[10:00] <bob> after blank lines\n\n",
    # Two halves of one character at the end of one file and the start of the next: both are bad.
    "2024/03/07": b"[10:00] <bob> half a character \xe4\xbd",
    "2024/03/08": b"\xa0[10:00] <bob> and its other half\n",
}


def _write(root, days=DAYS, raw_days=RAW_DAYS) -> list[str]:
    for day, lines in days.items():
        path = root / "libera" / day / "#test.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes("\n".join(lines).encode("utf-8") + (b"\n" if lines else b""))
    for day, data in raw_days.items():
        path = root / "libera" / day / "#test.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (unit,) = irc.units([str(root)])
    return unit


def _reference(unit: list[str]):
    outcomes = list(irc.read_unit(unit))
    q = [o.row("irc") for o in outcomes if isinstance(o, Quarantined)]
    table = _rows_to_table([o for o in outcomes if isinstance(o, dict)], "irc", q)
    return table, q, Counter(o.reason for o in outcomes if isinstance(o, Skipped)), len(outcomes)


def _ours(unit: list[str], batch_rows: int):
    batches = list(iter_unit_batches("irc", unit, batch_rows=batch_rows))
    assert all(b.records <= batch_rows for b in batches)
    return (pa.concat_tables([b.messages for b in batches]), [r for b in batches for r in b.quarantine],
            sum((b.skipped for b in batches), Counter()), sum(b.records for b in batches))


def _assert_same(unit: list[str], batch_rows: int):
    ref_t, ref_q, ref_s, ref_n = _reference(unit)
    t, q, s, n = _ours(unit, batch_rows)
    assert (n, s) == (ref_n, ref_s)
    assert q == ref_q  # the same rows, in record order
    for name in ref_t.column_names:  # a column that differs is named
        assert t.column(name).equals(ref_t.column(name)), name
    assert t.equals(ref_t)
    return ref_t, ref_q


@pytest.mark.parametrize("batch_rows", [1, 2, 7, 50, 20_000])
def test_block_reader_equals_line_reader_on_odd_files(tmp_path, batch_rows):
    t, q = _assert_same(_write(tmp_path), batch_rows)
    assert t.num_rows > 70 and t.num_rows - t.column("parent_inferred").null_count > 15
    assert {r["reason"] for r in q} == {"invalid_utf8", "unparsable_line", "bad_time", "too_large", "empty_file"}


def test_block_reader_equals_line_reader_on_the_real_sample(real):
    (unit,) = irc.units([str(real / "irc")])
    for batch_rows in (5, 300, 20_000):
        t, _ = _assert_same(unit, batch_rows)
        assert t.num_rows == 1772


def test_the_expressions_take_the_ordinary_lines(real, monkeypatch):
    """Only system lines and the few the byte checks cannot settle go to the per-line reference."""
    seen = []
    line = irc._line
    monkeypatch.setattr(irc, "_line", lambda *a: seen.append(a[-1]) or line(*a))
    (unit,) = irc.units([str(real / "irc")])
    list(irc.read_batches(unit, 20_000))
    others = [x for x in seen if not x.startswith(b"===")]
    assert len(seen) - len(others) == 264 and len(others) < 20  # of 1,772 messages


@pytest.mark.parametrize("scale", [1, 3])
def test_block_reader_equals_line_reader_on_the_generated_sample(tmp_path, scale):
    write_sample(str(tmp_path), seed=scale, scale=scale)
    for unit in irc.units([str(tmp_path / "irc")]):
        _assert_same(unit, 20_000)
        _assert_same(unit, 97)


@pytest.mark.parametrize("lines", [
    ["[10:00] <a> no rename", "[10:01] <b> a: and an address"], ["[10:00] <a> a: only self-address"],
    ["=== a is now known as b"], ["[10:00]  * a only an action"], ["[99:99] <a> only a bad time"],
], ids=["no-rename", "self-address", "rename-only", "action-only", "no-message"])
def test_block_reader_equals_line_reader_on_small_files(tmp_path, lines):
    _assert_same(_write(tmp_path, {"2024/01/01": lines, "2024/01/02": lines}, {}), 20_000)


NICKS = ["alice", "Alice", "ALICE", "bob", "bob_", "carol", "zo\u00eb", "ubottu", "x" * 20, "Dave"]
TAILS = ["  ", "\r", "\u00a0", "\x0b"]
WORDS = ["hi", "ok:", "a,b", "\u4f60\u597d", "caf\u00e9", " ", "\t", "\u3000", "\x1d", ":", ",", "", "bot"]


def _random_line(rng: random.Random) -> str:
    hhmm = rng.choice(["10:00", "23:59", "24:00", "09:60", "7:00"])
    nick, other = rng.choice(NICKS), rng.choice(NICKS)
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 4)))
    if rng.random() < 0.4:
        text = f"{other}{rng.choice([':', ',', ': ', ', ', ':x'])} {text}"
    tail = rng.choice(TAILS)
    return rng.choice([
        f"[{hhmm}] <{nick}> {text}", f"[{hhmm}] <{rng.choice('@+%&~')}{nick}> {text}", f"[{hhmm}]  * {nick} {text}",
        f"[{hhmm}] * {nick} {text}", f"=== {nick} is now known as {other}", f"=== {nick} has joined #c", text,
        f"[{hhmm}] <{nick}> {text}{tail}",
    ])


@pytest.mark.parametrize("seed", range(12))
def test_block_reader_equals_line_reader_on_random_lines(tmp_path, seed):
    rng = random.Random(seed)
    days = {f"2024/01/{d:02d}": [_random_line(rng) for _ in range(rng.randrange(0, 60))] for d in range(1, 5)}
    raw = {"2024/01/05": "\n".join(_random_line(rng) for _ in range(20)).encode().replace(b"o", b"\xff", 2)}
    unit = _write(tmp_path, days, raw)
    _assert_same(unit, rng.choice([1, 3, 16, 20_000]))
