"""Stack Exchange: a site dump folder (Posts.xml, Comments.xml, Users.xml), read by
:mod:`pipelines.sources.stackexchange`.
"""

from __future__ import annotations

import html
import os
import random
from datetime import datetime

from pipelines.sample.common import UTC, Person, Planted, _write, dt, make_people
from pipelines.sample.talk import Talk, lightly_edit, long_text


SE_SITE = "sourdough.stackexchange.com"


def _xattr(v) -> str:
    """An attribute value escaped the way the Stack Exchange dump writer does it."""
    s = str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return s.replace("\r", "&#xD;").replace("\n", "&#xA;")


def _xrow(attrs: dict) -> str:
    return "  <row " + " ".join(f'{k}="{_xattr(v)}"' for k, v in attrs.items() if v is not None) + " />"


def _se_time(ts: float) -> str:
    d = dt(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}"


def _to_html(text: str) -> str:
    paras = [html.escape(p, quote=False) for p in text.split("\n\n")]
    return "".join(f"<p>{p}</p>\n" for p in paras)


def _se_file(tag: str, rows: list[str]) -> bytes:
    head = f'\ufeff<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE {tag} SYSTEM \'{tag}.dtd\'>\n<{tag}>\n'
    return (head + "\n".join(rows) + f"\n</{tag}>").encode("utf-8")


def write_stackexchange(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    site = os.path.join(root, "stackexchange", SE_SITE)
    people = make_people(rng, 30 + 10 * scale, "display", lambda i: str(i + 1))
    for p in people:
        p.handle = p.display.replace(" ", "")  # the @name form comments use
    planted.people(people)
    planted.bot_names.add("Community")
    talk = Talk(rng, "stackexchange")
    t0 = datetime(2019, 6, 1, tzinfo=UTC).timestamp()
    posts, comments = [], []
    post_id, comment_id = 1, 1
    post_pii: list[tuple[str, str]] = []
    comment_pii: list[tuple[str, str]] = []
    deleted_names: dict = {}
    long_answers = []
    for qi in range(25 * scale):
        topic = rng.choice(["sourdough", "sourdough", "gardening"])
        msgs = talk.thread(topic, people, rng.randrange(4, 14), t0 + qi * 86400 * 0.7 / max(1, scale ** 0.5),
                           mean_gap=3600 * 3)
        owner = {}  # message index -> post id it belongs to
        for i, m in enumerate(msgs):
            who = m.author
            if rng.random() < 0.05:  # an account deleted since: only a `userNNN` display name is left
                who = deleted_names.setdefault(m.author.native_id, Person(None, f"user{rng.randrange(100, 99999)}",
                                                                          "", "deleted"))
                who.display = who.handle
                planted.author_names.add(who.handle)
            if i == 0 or (m.parent == 0 and not m.short):
                pid = post_id
                post_id += 1
                owner[i] = pid
                post_pii.extend(m.pii)
                edited = rng.random() < 0.2
                row = {"Id": pid, "PostTypeId": 1 if i == 0 else 2, "ParentId": None if i == 0 else owner[0],
                       "CreationDate": _se_time(m.t), "Score": rng.randrange(-1, 30),
                       "ViewCount": rng.randrange(20, 3000) if i == 0 else None, "Body": _to_html(m.text),
                       "OwnerUserId": who.native_id, "OwnerDisplayName": who.handle if who.kind == "deleted" else None,
                       "LastEditorUserId": who.native_id if edited else None,
                       "LastEditDate": _se_time(m.t + 5000) if edited else None,
                       "LastActivityDate": _se_time(m.t + 9000),
                       "Title": m.text.split("?")[0][:100] + "?" if i == 0 else None,
                       "Tags": f"<{topic}><troubleshooting>" if i == 0 else None,
                       "AnswerCount": sum(1 for x in msgs if x.parent == 0) if i == 0 else None,
                       "CommentCount": 0, "ContentLicense": "CC BY-SA 4.0"}
                posts.append(row)
                if i > 0 and not m.pii and who.kind == "user":
                    long_answers.append((row, m, topic))
            else:
                owner[i] = owner[m.parent] if m.parent in owner else owner[0]
                comment_pii.extend(m.pii)
                comments.append({"Id": comment_id, "PostId": owner[i], "Score": rng.randrange(0, 5),
                                 "Text": m.text, "CreationDate": _se_time(m.t),
                                 "UserDisplayName": who.handle if who.kind == "deleted" else None,
                                 "UserId": who.native_id, "ContentLicense": "CC BY-SA 4.0"})
                comment_id += 1
    # The same answer posted again by someone else with two words changed (a near-duplicate).
    for row, m, topic in rng.sample(long_answers, 2):
        text = long_text(rng, topic)
        row["Body"] = _to_html(text)
        other = rng.choice([p for p in people if p.native_id != row["OwnerUserId"]])
        posts.append(dict(row, Id=post_id, OwnerUserId=other.native_id, OwnerDisplayName=None,
                          Body=_to_html(lightly_edit(rng, text)), CreationDate=_se_time(m.t + 86400 * 3)))
        planted.near_duplicates.append({"format": "stackexchange", "kind": "light_edit",
                                        "message_ids": [f"stackexchange:{SE_SITE}:p{row['Id']}",
                                                        f"stackexchange:{SE_SITE}:p{post_id}"]})
        post_id += 1
    # Community owns the tag wiki pair (excerpt + wiki), as on every site.
    for typ in (4, 5):
        posts.append({"Id": post_id, "PostTypeId": typ, "CreationDate": _se_time(t0 + 3600), "Score": 0,
                      "Body": "" if typ == 5 else "Questions about wild yeast starters and how to keep them alive.",
                      "OwnerUserId": "-1", "LastActivityDate": _se_time(t0 + 3600), "CommentCount": 0,
                      "ContentLicense": "CC BY-SA 4.0"})
        post_id += 1
    posts.sort(key=lambda r: r["Id"])
    per_post: dict = {}
    for c in comments:
        per_post[c["PostId"]] = per_post.get(c["PostId"], 0) + 1
    for r in posts:
        r["CommentCount"] = per_post.get(r["Id"], 0)
    path = os.path.join(site, "Comments.xml")
    bad_time = dict(comments[4], Id=comment_id, CreationDate="2019-13-45T25:61:00.000",
                    Text="this comment has an impossible date")
    no_post = {k: v for k, v in comments[6].items() if k != "PostId"}
    no_post.update(Id=comment_id + 1, Text="this comment lost its post id")
    comments += [bad_time, no_post]
    planted.break_("stackexchange", path, "bad_time", "a comment with CreationDate 2019-13-45T25:61:00.000")
    planted.break_("stackexchange", path, "missing_field", "a comment without PostId")
    _write(path, _se_file("comments", [_xrow(c) for c in comments]))
    planted.wrote("stackexchange", path, len(comments))
    planted.pii_in("stackexchange", path, comment_pii)
    path = os.path.join(site, "Posts.xml")
    _write(path, _se_file("posts", [_xrow(r) for r in posts]))
    planted.wrote("stackexchange", path, len(posts))
    planted.pii_in("stackexchange", path, post_pii)
    users = [{"Id": "-1", "Reputation": 1, "CreationDate": _se_time(t0 - 86400 * 30), "DisplayName": "Community",
              "LastAccessDate": _se_time(t0 - 86400 * 30), "Location": "on the server farm",
              "AboutMe": "<p>Hi, I'm not really a person.</p>\n", "Views": 0, "UpVotes": 100, "DownVotes": 50,
              "AccountId": "-1"}]
    for p in people:
        users.append({"Id": p.native_id, "Reputation": rng.randrange(1, 5000),
                      "CreationDate": _se_time(t0 - rng.randrange(0, 86400 * 300)), "DisplayName": p.display,
                      "LastAccessDate": _se_time(t0 + 86400 * 200), "Location": rng.choice([None, "Lyon", "Ohio"]),
                      "Views": rng.randrange(0, 300), "UpVotes": rng.randrange(0, 50), "DownVotes": 0,
                      "AccountId": str(1_000_000 + int(p.native_id))})
    path = os.path.join(site, "Users.xml")
    _write(path, _se_file("users", [_xrow(u) for u in users]))
    planted.wrote("stackexchange", path, len(users))
