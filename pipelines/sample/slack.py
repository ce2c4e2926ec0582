"""Slack: a workspace export folder (and a .zip of a second workspace), read by
:mod:`pipelines.sources.slack`.
"""

from __future__ import annotations

import json
import os
import random
import zipfile
from datetime import datetime

from pipelines.sample.common import UTC, Person, Planted, _json, _write, b36, dt, hash_int, make_people
from pipelines.sample.talk import Talk


SLACK_TZ_OFFSET = -8 * 3600  # America/Los_Angeles (winter): day files follow this local date


def _slack_ts(ts: float, n: int) -> str:
    return f"{int(ts)}.{n % 1_000_000:06d}"


def _slack_json(obj) -> bytes:
    # Slack's exporter writes 4-space indents, \uXXXX escapes and escaped slashes.
    return _json(obj, indent=4).replace("/", "\\/").encode()


def _slack_workspace(rng: random.Random, scale: int, planted: Planted, name: str, team: str, t0: float,
                     channel_names: list[str], broken: bool) -> dict[str, bytes]:
    """The files of one export, keyed by relative path."""
    people = make_people(rng, 10 + 4 * scale, "login", lambda i: "U0" + b36(int("4G0000", 36) + i * 7919).upper())
    bot_user = Person("U0BOTDEPLOY", "deploybot", "Deploy Bot", "bot")
    gone = people[-1]  # an account deleted since: users.json says so, its messages stay
    planted.people(people + [bot_user])
    talk = Talk(rng, "slack")
    files: dict[str, bytes] = {}
    counter = [0]

    def ts_of(t: float) -> str:
        counter[0] += 1
        return _slack_ts(t, counter[0])

    users = []
    for p in people:
        deleted = p is gone
        users.append({"id": p.native_id, "team_id": team, "name": p.handle, "deleted": deleted,
                      "color": "9f69e7", "real_name": p.display, "tz": "America/Los_Angeles",
                      "tz_label": "Pacific Standard Time", "tz_offset": SLACK_TZ_OFFSET,
                      "profile": {"title": "", "phone": "", "skype": "", "real_name": p.display,
                                  "real_name_normalized": p.display, "display_name": p.handle,
                                  "display_name_normalized": p.handle, "fields": None, "status_text": "",
                                  "status_emoji": "", "first_name": p.display.split(" ")[0],
                                  "last_name": p.display.split(" ")[1], "team": team},
                      "is_admin": False, "is_owner": False, "is_bot": False, "is_app_user": False})
    users.append({"id": bot_user.native_id, "team_id": team, "name": "deploybot", "deleted": False,
                  "real_name": "Deploy Bot", "profile": {"real_name": "Deploy Bot", "display_name": "",
                                                         "bot_id": "B0DEPLOY01", "team": team},
                  "is_bot": True, "is_app_user": False})
    channels = []
    for ci, cname in enumerate(channel_names):
        cid = "C0" + b36(int("5A0000", 36) + ci * 104729).upper()
        channels.append({"id": cid, "name": cname, "created": str(int(t0) - 86400 * 30), "creator": people[0].native_id,
                         "is_archived": False, "is_general": ci == 0, "members": [p.native_id for p in people],
                         "topic": {"value": "", "creator": "", "last_set": "0"},
                         "purpose": {"value": f"All things {cname}", "creator": people[0].native_id,
                                     "last_set": str(int(t0) - 86400 * 30)}})
        days: dict[str, list[dict]] = {}

        def put(msg: dict) -> None:
            local = dt(float(msg["ts"]) + SLACK_TZ_OFFSET).strftime("%Y-%m-%d")
            days.setdefault(local, []).append(msg)

        pii = []
        tombstoned = False
        put({"user": people[1].native_id, "type": "message", "subtype": "channel_join",
             "text": f"<@{people[1].native_id}> has joined the channel", "ts": ts_of(t0 + ci * 600)})
        for th in range(5 * scale):
            msgs = talk.thread(rng.choice(["homelab", "boardgames", "bikes"]), people, rng.randrange(4, 16),
                               t0 + ci * 600 + th * 86400 * 1.3 / max(1, scale ** 0.5) + rng.randrange(0, 40000),
                               mean_gap=420, tree=False)
            root_ts = ts_of(msgs[0].t)
            threaded = rng.random() < 0.5
            replies = []
            for j, m in enumerate(msgs):
                pii.extend(m.pii)
                ts = root_ts if j == 0 else ts_of(m.t)
                d = {"client_msg_id": f"{hash_int(ts + cname):016x}"[:8] + "-0000-4000-8000-" + f"{hash_int(ts):012x}"[:12],
                     "type": "message", "text": m.text, "user": m.author.native_id, "ts": ts, "team": team,
                     "user_team": team, "source_team": team,
                     "user_profile": {"real_name": m.author.display, "display_name": m.author.handle,
                                      "name": m.author.handle, "first_name": m.author.display.split(" ")[0],
                                      "is_restricted": False, "is_ultra_restricted": False, "team": team},
                     "blocks": [{"type": "rich_text", "block_id": f"b{counter[0]}", "elements": [
                         {"type": "rich_text_section", "elements": [{"type": "text", "text": m.text}]}]}]}
                if threaded and j > 0:
                    d["thread_ts"] = root_ts
                    d["parent_user_id"] = msgs[0].author.native_id
                    replies.append({"user": m.author.native_id, "ts": ts})
                if rng.random() < 0.04:
                    d["edited"] = {"user": m.author.native_id, "ts": _slack_ts(m.t + 90, 0)}
                put(d)
                if j == 0:
                    root = d
            if threaded and replies:
                root.update(thread_ts=root_ts, reply_count=len(replies),
                            reply_users_count=len({r["user"] for r in replies}), latest_reply=replies[-1]["ts"],
                            reply_users=sorted({r["user"] for r in replies}), replies=replies, is_locked=False,
                            subscribed=False)
                if ci == 0 and not tombstoned:
                    # The thread's first message was deleted: Slack keeps a tombstone for the replies.
                    for k in ("client_msg_id", "user_profile", "blocks", "team", "user_team", "source_team"):
                        root.pop(k, None)
                    pii[:] = [x for x in pii if x not in msgs[0].pii]
                    root.update(subtype="tombstone", text="This message was deleted.", user="USLACKBOT", hidden=True)
                    tombstoned = True
            if th % 3 == 1:  # a deploy notification from an integration: no `user`
                put({"text": "", "bot_id": "B0DEPLOY01", "username": "deploybot", "type": "message",
                     "subtype": "bot_message", "ts": ts_of(msgs[-1].t + 300),
                     "attachments": [{"fallback": f"Deployed build #{rng.randrange(100, 999)} to staging",
                                      "text": f"Deployed build #{rng.randrange(100, 999)} to staging", "id": 1,
                                      "color": "36a64f"}]})
        for day in sorted(days):
            files[f"{cname}/{day}.json"] = _slack_json(sorted(days[day], key=lambda m: float(m["ts"])))
        files[f"__pii__/{cname}"] = _json(pii).encode()  # bookkeeping, not written
    files["channels.json"] = _slack_json(channels)
    files["users.json"] = _slack_json(users)
    files["integration_logs.json"] = _slack_json([{"user_id": people[0].native_id, "user_name": people[0].handle,
                                                   "bot_id": "B0DEPLOY01", "date": str(int(t0) - 86400 * 20),
                                                   "change_type": "added", "scope": "incoming-webhook",
                                                   "service_type": "Incoming WebHooks", "channel": channels[0]["id"]}])
    if broken:
        day = sorted(k for k in files if k.startswith(channel_names[-1] + "/"))[-1]
        files[day.replace(".json", "") + "-2.json"] = b'[\n    {\n        "type": "message",\n        "text": "the export crashed wh'
    return files


def write_slack(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    base = os.path.join(root, "slack")
    t0 = datetime(2022, 1, 10, 17, tzinfo=UTC).timestamp()
    spaces = [("makerspace", "T0MAKER01", ["general", "homelab", "random"], True, False),
              ("boardgame-night", "T0GAMES02", ["general", "game-picks"], False, True)]
    for name, team, chans, broken, as_zip in spaces:
        files = _slack_workspace(random.Random(rng.random()), scale, planted, name, team, t0, chans, broken)
        pii_files = {k: v for k, v in files.items() if k.startswith("__pii__/")}
        files = {k: v for k, v in files.items() if not k.startswith("__pii__/")}
        n_records = sum(len(json.loads(v)) for k, v in files.items() if "/" in k and _is_json(v))
        if as_zip:
            path = os.path.join(base, f"{name} Slack export Jan 10 2022 - Mar 1 2022.zip")
            buf = _zip(files)
            _write(path, buf)
            planted.wrote("slack", path, n_records)
            for k, v in pii_files.items():
                planted.pii_in("slack", path, [tuple(x) for x in json.loads(v)])
        else:
            folder = os.path.join(base, name)
            for rel, data in sorted(files.items()):
                _write(os.path.join(folder, rel), data)
            planted.wrote("slack", folder, n_records + sum(1 for k, v in files.items() if "/" in k and not _is_json(v)))
            for k, v in pii_files.items():
                planted.pii_in("slack", os.path.join(folder, k.split("/", 1)[1]), [tuple(x) for x in json.loads(v)])
            for rel, data in files.items():
                if not _is_json(data):
                    planted.break_("slack", os.path.join(folder, rel), "invalid_json",
                                   "a day file cut off mid-write (not JSON)")


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


def _zip(files: dict[str, bytes]) -> bytes:
    """A zip with fixed timestamps and order, so the bytes depend only on the content."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel in sorted(files):
            info = zipfile.ZipInfo(rel, date_time=(2022, 3, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[rel])
    return buf.getvalue()
