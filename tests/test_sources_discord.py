"""Discord reader (DiscordChatExporter JSON) on the real example guild and broken exports."""

import json

import pytest

from pipelines.stages.ingest import ingest
from pipelines.sources import Skipped, get_reader
from schemas import MESSAGES as M

READER = get_reader("discord")
CHILL = "Example guild - Text Channels - chill talk [1012224565567125544]"


def read(paths):
    return [o for unit in READER.units([str(p) for p in paths]) for o in READER.read_unit(unit)]


@pytest.fixture(scope="module")
def guild(real):
    return real / "discord" / "dce-frontend-example-guild"


@pytest.fixture(scope="module")
def outcomes(guild):
    return read(sorted(guild.glob("*.json")))


def test_counts_conserve_and_system_events_are_skipped(outcomes, guild, tmp_path):
    msgs = [o for o in outcomes if isinstance(o, dict)]
    skipped = [o.reason for o in outcomes if isinstance(o, Skipped)]
    assert len(outcomes) == 51 and len(msgs) == 47
    assert skipped == ["system_event"] * 4  # 3 GuildMemberJoin + 1 ThreadCreated
    assert not any(m[M.text] in ("Joined the server.", "Started a thread.") for m in msgs)
    stats = ingest("discord", [str(guild / "*.json")], str(tmp_path / "m"), str(tmp_path / "q"))
    assert (stats.records, stats.messages, stats.skipped, stats.quarantined) == (51, 47, 4, 0)


def test_both_exports_of_one_channel_share_message_ids(guild):
    before = {o[M.message_id] for o in read([guild / f"{CHILL}.json"]) if isinstance(o, dict)}
    after = {o[M.message_id] for o in read([guild / f"{CHILL} without deleted message.json"])
             if isinstance(o, dict)}
    assert len(before) == 6 and len(after) == 5
    assert after < before  # the spam message was deleted between the exports
    assert before - after == {"discord:1060954094627463098"}


def test_replies_threads_edits_and_communities(outcomes):
    msgs = {o[M.message_id]: o for o in outcomes if isinstance(o, dict)}
    reply = msgs["discord:1060954094627463198"]
    assert reply[M.parent_id] == "discord:1060954094627463098"
    assert reply[M.thread_id] == "discord:1012224565567875236"  # the channel id inside the file
    assert {m[M.community] for m in msgs.values()} == {"discord:748545324524575035"}
    thread = [m for m in msgs.values() if m[M.thread_id] == "discord:1060927310439657577"]
    assert len(thread) == 5
    edited = msgs["discord:1060926487911485582"]
    assert edited[M.edited_at].isoformat() == "2023-01-06T14:23:25.845000+00:00"
    assert edited[M.created_at].isoformat() == "2023-01-06T14:23:05.779000+00:00"
    assert msgs["discord:1060927254248558702"][M.score] == 2  # two kekw reactions


def _export(messages, channel_type="GuildTextChat", guild_id="1"):
    return json.dumps({"guild": {"id": guild_id, "name": "g"}, "channel": {"id": "77", "type": channel_type},
                       "messages": messages})


def _msg(i, **over):
    m = {"id": str(i), "type": "Default", "timestamp": "2024-01-01T00:00:00+00:00", "timestampEdited": None,
         "content": f"hello {i}", "author": {"id": "5", "name": "ann", "nickname": "Ann", "isBot": False},
         "reactions": []}
    m.update(over)
    return m


def test_bots_deleted_users_and_dms(tmp_path):
    f = tmp_path / "dm.json"
    f.write_text(_export([
        _msg(1),
        _msg(2, author={"id": "6", "name": "helper", "isBot": True}),
        _msg(3, author={"id": "456226577798135808", "name": "Deleted User", "discriminator": "0000"}),
        _msg(4, type="ChannelPinnedMessage"),
    ], channel_type="DirectTextChat", guild_id="0"))
    out = read([f])
    ann, bot, gone = out[:3]
    assert (ann[M.author_kind], ann[M.author_name], ann[M.recipient_ids]) == ("user", "Ann", ["6"])
    assert bot[M.author_kind] == "bot"
    assert (gone[M.author_kind], gone[M.author_id], gone[M.author_name]) == ("deleted", None, None)
    assert ann[M.community] == "discord:77"  # a DM has no guild: the channel is the community
    assert out[3] == Skipped("system_event")


def test_broken_exports_are_quarantined(tmp_path):
    cases = {
        "empty.json": (b"", "empty_file"),
        "bad.json": (b'{"guild": {"id": "1"}, "messages": [', "invalid_json"),
        "latin1.json": ('{"channel": {"id": "1"}, "messages": [{"content": "caf\u00e9"}]}'.encode("latin-1"),
                        "invalid_utf8"),
        "nochannel.json": (b'{"messages": []}', "missing_field"),
        "list.json": (b"[]", "wrong_type"),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    got = {o.source_uri.rsplit("/", 1)[1]: o.reason for o in read(sorted(tmp_path.glob("*.json")))}
    assert got == {name: reason for name, (_, reason) in cases.items()}


def test_bad_elements_are_quarantined_one_by_one(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(_export([_msg(1), "junk", _msg(3, timestamp="yesterday"), _msg(4, author=None),
                          _msg(5, content=["not", "text"]), {"type": "Default"}, _msg(7, content="x" * 100_001)]))
    out = read([f])
    assert isinstance(out[0], dict)
    assert [o.reason for o in out[1:]] == ["wrong_type", "bad_time", "missing_field", "wrong_type",
                                           "missing_field", "too_large"]
    assert [o.source_record for o in out[1:]] == [1, 2, 3, 4, 5, 6]
