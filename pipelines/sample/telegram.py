"""Telegram: Telegram Desktop "Export chat history" result.json (new and 2020 formats), read by
:mod:`pipelines.sources.telegram`.
"""

from __future__ import annotations

import json
import os
import random
from datetime import datetime

from pipelines.sample.common import UTC, Planted, _json, _write, dt, make_people
from pipelines.sample.talk import TOPICS, Talk


TELEGRAM_LOCAL_OFFSET = 3600  # the exporting computer's clock (CET): `date` is local, `date_unixtime` UTC


def _tg_local(ts: float) -> str:
    return dt(ts + TELEGRAM_LOCAL_OFFSET).strftime("%Y-%m-%dT%H:%M:%S")


def _tg_entities(text: str, people_by_mention: dict) -> list:
    """Telegram's `text` as a list: plain strings and entity objects (mentions, links, bold)."""
    parts: list = []
    for w in text.split(" "):
        core = w.rstrip(".,!?)")
        if core.startswith("@@") and core in people_by_mention:
            p = people_by_mention[core]
            ent = {"type": "mention_name", "text": p.display, "user_id": int(p.native_id)}
        elif core.startswith("http"):
            ent = {"type": "link", "text": core}
        else:
            ent = None
        if ent:
            parts.append(ent)
            tail = w[len(core):] + " "
            parts.append(tail)
        else:
            if parts and isinstance(parts[-1], str):
                parts[-1] += w + " "
            else:
                parts.append(w + " ")
    if parts and isinstance(parts[-1], str):
        parts[-1] = parts[-1][:-1]
        if not parts[-1]:
            parts.pop()
    return parts


def write_telegram(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    base = os.path.join(root, "telegram")
    people = make_people(rng, 12 + 4 * scale, "login", lambda i: 5_000_000_000 + i * 7777)
    for p in people:
        p.handle = p.display  # exports show only display names (`from`), never usernames
    planted.people(people)
    by_mention = {f"@@{p.native_id}": p for p in people}
    talk = Talk(rng, "telegram")
    t0 = datetime(2023, 11, 5, 9, tzinfo=UTC).timestamp()
    chat_id = 1_788_654_321
    out, pii = [], []
    out.append({"id": 1, "type": "service", "date": _tg_local(t0 - 600), "date_unixtime": str(int(t0 - 600)),
                "actor": people[0].display, "actor_id": f"user{people[0].native_id}", "action": "create_group",
                "title": "Bike Commuters", "members": [p.display for p in people[:4]], "text": "",
                "text_entities": []})
    next_id = 2
    for th in range(6 * scale):
        msgs = talk.thread("bikes", people, rng.randrange(10, 40), t0 + th * 86400 * 0.9, mean_gap=240, tree=True)
        ids = []
        for j, m in enumerate(msgs):
            pii.extend(m.pii)
            text = _tg_entities(m.text, by_mention) if ("@" in m.text or "http" in m.text or rng.random() < 0.1) else m.text
            if isinstance(text, list) and rng.random() < 0.3 and isinstance(text[0], str) and len(text[0]) > 12:
                text[0:1] = [{"type": "bold", "text": text[0][:8]}, text[0][8:]]
            d = {"id": next_id, "type": "message", "date": _tg_local(m.t), "date_unixtime": str(int(m.t)),
                 "from": m.author.display, "from_id": f"user{m.author.native_id}"}
            if rng.random() < 0.05:
                d["edited"] = _tg_local(m.t + 100)
                d["edited_unixtime"] = str(int(m.t + 100))
            if m.parent is not None and m.parent != j - 1:
                d["reply_to_message_id"] = ids[m.parent]
            d["text"] = text
            assert "@@" not in json.dumps(text), "a mention marker was not turned into an entity"
            d["text_entities"] = ([{"type": "plain", "text": x} if isinstance(x, str) else x for x in text]
                                  if isinstance(text, list) else [{"type": "plain", "text": text}])
            ids.append(next_id)
            next_id += 1
            out.append(d)
        if th == 1:  # a forwarded message from a channel
            fwd = {"id": next_id, "type": "message", "date": _tg_local(msgs[-1].t + 60),
                   "date_unixtime": str(int(msgs[-1].t + 60)), "from": people[2].display,
                   "from_id": f"user{people[2].native_id}", "forwarded_from": "City Cycling News",
                   "text": "New protected bike lane opens on Harbour Street next Monday.",
                   "text_entities": [{"type": "plain", "text": "New protected bike lane opens on Harbour Street next Monday."}]}
            out.append(fwd)
            next_id += 1
        if th == 2:  # someone pins a message: a service message
            out.append({"id": next_id, "type": "service", "date": _tg_local(msgs[-1].t + 30),
                        "date_unixtime": str(int(msgs[-1].t + 30)), "actor": people[0].display,
                        "actor_id": f"user{people[0].native_id}", "action": "pin_message",
                        "message_id": ids[0], "text": "", "text_entities": []})
            next_id += 1
    path = os.path.join(base, "result.json")
    _write(path, _json({"name": "Bike Commuters", "type": "private_supergroup", "id": chat_id, "messages": out},
                       indent=1, ascii=False).encode())
    planted.wrote("telegram", path, len(out))
    planted.pii_in("telegram", path, pii)

    # An older export (2020 format): integer ids, no date_unixtime, a channel posting as itself.
    ch_id = 1_234_509_876
    posts, pii = [], []
    planted.author_names.add("Allotment Notes")  # a channel posts under its own name
    topic = TOPICS["gardening"]
    t1 = datetime(2020, 11, 12, 11, tzinfo=UTC).timestamp()
    posts.append({"id": 1, "type": "service", "date": _tg_local(t1), "actor": "Allotment Notes", "actor_id": ch_id,
                  "action": "create_channel", "title": "Allotment Notes", "text": ""})
    for k in range(2, 20 * scale + 2):
        ts = t1 + k * 5400
        text = talk.fill("{advice}", topic)
        if k % 4 == 0:
            text = [{"type": "bold", "text": "Tip of the day: "}, text]
        posts.append({"id": k, "type": "message", "date": _tg_local(ts), "from": "Allotment Notes", "from_id": ch_id,
                      "text": text})
    posts.insert(7, {"id": 20 * scale + 5, "type": "message", "date": "2020-11-31T25:61:00", "from": "Allotment Notes",
                     "from_id": ch_id, "text": "a post with an impossible date"})
    path = os.path.join(base, "ChatExport_2020-11-20", "result.json")
    _write(path, _json({"name": "Allotment Notes", "type": "public_channel", "id": ch_id, "messages": posts},
                       indent=1, ascii=False).encode())
    planted.wrote("telegram", path, len(posts))
    planted.break_("telegram", path, "bad_time", "a message dated 2020-11-31T25:61:00")
