"""Discord: DiscordChatExporter JSON, one file per channel or thread, read by
:mod:`pipelines.sources.discord`.
"""

from __future__ import annotations

import os
import random
from datetime import datetime

from pipelines.sample.common import UTC, Person, Planted, _json, _write, dt, hash_int, make_people
from pipelines.sample.talk import SPAM, Talk


DISCORD_EPOCH_MS = 1420070400000
DISCORD_DELETED_USER_ID = "456226577798135808"  # the id Discord shows for every deleted account


def _snowflake(ts: float, n: int) -> str:
    return str(((int(ts * 1000) - DISCORD_EPOCH_MS) << 22) | (n & 0x3FFFFF))


def _dce_time(ts: float) -> str:
    d = dt(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}+00:00"


def write_discord(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    out = os.path.join(root, "discord")
    t0 = datetime(2023, 2, 1, tzinfo=UTC).timestamp()
    guild = {"id": _snowflake(t0 - 86400 * 900, 1), "name": "Bread Club", "iconUrl": "https://cdn.discordapp.com/embed/avatars/0.png"}
    people = make_people(rng, 18 + 6 * scale, "display", lambda i: _snowflake(t0 - 86400 * (800 - i), i))
    for p in people:
        p.handle = p.display.split(" ")[0].lower() + p.display.split(" ")[1][:2].lower()
    bot = Person(_snowflake(t0 - 86400 * 700, 99), "Crumbot", "Crumbot", "bot")
    gone = Person(DISCORD_DELETED_USER_ID, "Deleted User", "Deleted User", "deleted")
    spammers = make_people(random.Random(rng.random()), 3, "display",
                           lambda i: _snowflake(t0 + 86400, 500 + i))
    for p in spammers:
        p.handle = p.display.replace(" ", "").lower()
    planted.people(people + spammers + [bot])
    talk = Talk(rng, "discord")
    counter = [0]

    def author(p: Person) -> dict:
        return {"id": p.native_id, "name": p.handle if p.kind != "deleted" else "Deleted User",
                "discriminator": "0000" if p.kind == "deleted" else f"{hash_int(p.handle) % 10000:04d}",
                "nickname": p.display, "color": None, "isBot": p.kind == "bot",
                "avatarUrl": "https://cdn.discordapp.com/embed/avatars/1.png"}

    def message(p: Person, ts: float, content: str, typ="Default", ref=None, mentions=()) -> dict:
        counter[0] += 1
        m = {"id": _snowflake(ts, counter[0]), "type": typ, "timestamp": _dce_time(ts), "timestampEdited": None,
             "callEndedTimestamp": None, "isPinned": False, "content": content, "author": author(p),
             "attachments": [], "embeds": [], "stickers": [], "reactions": [],
             "mentions": [{k: v for k, v in author(x).items() if k in ("id", "name", "discriminator", "nickname", "isBot")}
                          for x in mentions]}
        if ref is not None:
            m["reference"] = ref
        return m

    channels = [("Text Channels", "general"), ("Text Channels", "baking-help"), ("Off Topic", "garden-chat")]
    exports = []
    for ci, (category, name) in enumerate(channels):
        cid = _snowflake(t0 - 86400 * (600 - ci), 10 + ci)
        msgs = talk.thread(["sourdough", "sourdough", "gardening"][ci], people, 60 * scale + rng.randrange(0, 30),
                           t0 + ci * 3600, mean_gap=900, tree=True)
        out_msgs, ids, pii = [], [], []
        for i, m in enumerate(msgs):
            if i % 25 == 7:  # someone joins: a system event
                joiner = rng.choice(people)
                out_msgs.append(message(joiner, m.t - 30, "Joined the server.", "GuildMemberJoin"))
            p = m.author
            if rng.random() < 0.04:
                p = gone
            ref, typ = None, "Default"
            if m.parent is not None and m.parent != i - 1 and rng.random() < 0.7:
                typ = "Reply"
                ref = {"messageId": ids[m.parent], "channelId": cid, "guildId": guild["id"]}
            elif m.parent is not None and rng.random() < 0.1:
                ref = {"messageId": ids[m.parent], "channelId": cid, "guildId": guild["id"]}
            d = message(p, m.t, m.text, typ, ref, [m.addressed] if m.addressed else [])
            if rng.random() < 0.05:
                d["timestampEdited"] = _dce_time(m.t + 120)
            ids.append(d["id"])
            out_msgs.append(d)
            pii.extend(m.pii)
            if i % 30 == 12:  # the bot answers a command
                out_msgs.append(message(p, m.t + 2, "!rules"))
                out_msgs.append(message(bot, m.t + 3, "Rule 1: be kind. Rule 2: no spam. Rule 3: post your crumb shots in #baking-help."))
        if ci == 0:
            # Spam posted by three fresh accounts (a mass near-duplicate cluster).
            spam_ids = []
            for k, sp in enumerate(spammers):
                ts = msgs[10 + 5 * k].t + 40
                out_msgs.append(message(sp, ts, SPAM if k != 1 else SPAM.replace("tonight", "today")))
                spam_ids.append(f"discord:{out_msgs[-1]['id']}")
            planted.near_duplicates.append({"format": "discord", "kind": "spam", "message_ids": spam_ids})
            # A thread started from this channel: a system event here, its own export file.
            ts = msgs[20].t + 10
            thread_id = _snowflake(ts, 777)
            out_msgs.append(message(msgs[20].author, ts, "Started a thread.", "ThreadCreated",
                                    {"messageId": None, "channelId": thread_id, "guildId": guild["id"]}))
            tmsgs = talk.thread("sourdough", people[:6], 12, ts + 20, mean_gap=200, tree=False)
            t_out, tpii = [], []
            for j, m in enumerate(tmsgs):
                ref = {"messageId": t_out[-1]["id"], "channelId": thread_id, "guildId": guild["id"]} if j and j % 3 == 0 else None
                t_out.append(message(m.author, m.t, m.text, "Reply" if ref else "Default", ref))
                tpii.extend(m.pii)
            exports.append(({"id": thread_id, "type": "GuildPublicThread", "categoryId": cid, "category": name,
                             "name": "Crumb shot critique", "topic": None}, t_out, tpii))
            # A pinned-message notice: a system event.
            out_msgs.append(message(msgs[3].author, msgs[3].t + 50, "Pinned a message.", "ChannelPinnedMessage",
                                    {"messageId": ids[2], "channelId": cid, "guildId": guild["id"]}))
        out_msgs.sort(key=lambda d: (int(d["id"]) >> 22, d["id"]))
        exports.append(({"id": cid, "type": "GuildTextChat", "categoryId": _snowflake(t0 - 86400 * 650, 5 + ci),
                         "category": category, "name": name, "topic": "Welcome!" if ci == 0 else None}, out_msgs, pii))
    for k, (channel, msgs_out, pii) in enumerate(exports):
        # DiscordChatExporter's default name; for a thread the "category" is its parent channel.
        fname = f"{guild['name']} - {channel['category']} - {channel['name']} [{channel['id']}].json"
        path = os.path.join(out, fname)
        msgs_w = msgs_out
        if k == len(exports) - 1:  # last channel: one message with an unreadable timestamp
            msgs_w = list(msgs_out)
            bad = dict(msgs_w[5], id=_snowflake(t0, 999_999), timestamp="not a timestamp")
            msgs_w.insert(6, bad)
            planted.break_("discord", path, "bad_time", "a message whose timestamp is 'not a timestamp'")
        doc = {"guild": guild, "channel": channel, "dateRange": {"after": None, "before": None},
               "exportedAt": _dce_time(t0 + 86400 * 60), "messages": msgs_w, "messageCount": len(msgs_w)}
        _write(path, _json(doc, indent=2).encode())
        planted.wrote("discord", path, len(msgs_w))
        planted.pii_in("discord", path, pii)
    # The general channel exported again three weeks later: the spam is gone, one message edited.
    channel, msgs_out, pii = exports[1] if exports[0][0]["type"] == "GuildPublicThread" else exports[0]
    again = []
    dropped = None
    for d in msgs_out:
        if dropped is None and d["content"] == SPAM:
            dropped = d["id"]
            continue
        again.append(d)
    target = next(i for i, d in enumerate(again) if d["type"] in ("Default", "Reply") and len(d["content"]) > 40
                  and d["author"]["id"] != DISCORD_DELETED_USER_ID)
    again[target] = dict(again[target], content=again[target]["content"] + " (edit: never mind, fixed it)",
                         timestampEdited=_dce_time(t0 + 86400 * 70))
    path = os.path.join(out, f"{guild['name']} - {channel['category']} - {channel['name']} [{channel['id']}] (re-export).json")
    doc = {"guild": guild, "channel": channel, "dateRange": {"after": None, "before": None},
           "exportedAt": _dce_time(t0 + 86400 * 81), "messages": again, "messageCount": len(again)}
    _write(path, _json(doc, indent=2).encode())
    planted.wrote("discord", path, len(again))
    planted.pii_in("discord", path, pii)
    for d in again:
        if d["type"] in ("Default", "Reply"):
            planted.record_duplicates.append({"format": "discord", "message_id": f"discord:{d['id']}", "copies": 2,
                                              "why": "the channel exported twice"})
