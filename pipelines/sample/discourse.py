"""Discourse: topic pages from the JSON API (/t/<id>/posts.json, …?post_number=N), read by
:mod:`pipelines.sources.discourse`.
"""

from __future__ import annotations

import html
import os
import random
from datetime import datetime

from pipelines.sample.common import UTC, Planted, _json, _write, dt, make_people
from pipelines.sample.talk import Talk


DISCOURSE_FORUM = "forum.breadclub.example"


def _discourse_time(ts: float) -> str:
    d = dt(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _cooked(text: str, people_by_handle: dict) -> str:
    out = []
    for para in text.split("\n\n"):
        words = []
        for w in html.escape(para, quote=False).split(" "):
            h = w[1:].rstrip(".,!?)")
            if w.startswith("@") and h in people_by_handle:
                w = f'<a class="mention" href="/u/{h.lower()}">@{h}</a>' + w[1 + len(h):]
            words.append(w)
        out.append("<p>" + " ".join(words) + "</p>")
    return "\n".join(out)


def write_discourse(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    forum = os.path.join(root, "discourse", DISCOURSE_FORUM)
    people = make_people(rng, 20 + 6 * scale, "login", lambda i: i + 2)
    planted.people(people)
    by_handle = {p.handle: p for p in people}
    talk = Talk(rng, "discourse")
    t0 = datetime(2022, 9, 1, tzinfo=UTC).timestamp()
    topic_id = 3100
    for ti in range(4 * scale):
        topic_id += rng.randrange(1, 40)
        n = 34 if ti == 0 else rng.randrange(8, 45)
        msgs = talk.thread(rng.choice(["sourdough", "boardgames", "gardening"]), people, n,
                           t0 + ti * 86400 * 2, mean_gap=5400)
        slug = "-".join(msgs[0].text.lower().replace("?", "").replace("'", "").split()[:6])
        posts, number, pii = [], 0, []
        for i, m in enumerate(msgs):
            number += 2 if rng.random() < 0.08 and i else 1  # post_number has gaps (deleted posts)
            m.number = number  # type: ignore[attr-defined]
            pii.extend(m.pii)
            parent = msgs[m.parent] if m.parent is not None and m.parent != i - 1 else None
            p = {"id": 41000 + topic_id * 100 + number, "name": m.author.display, "username": m.author.handle,
                 "avatar_template": f"/user_avatar/{DISCOURSE_FORUM}/{m.author.handle.lower()}/{{size}}/{m.author.native_id}_2.png",
                 "created_at": _discourse_time(m.t), "cooked": _cooked(m.text, by_handle), "post_number": number,
                 "post_type": 1, "updated_at": _discourse_time(m.t), "reply_count": 0,
                 "reply_to_post_number": parent.number if parent else None,  # type: ignore[attr-defined]
                 "quote_count": 0, "incoming_link_count": 0, "reads": rng.randrange(3, 60),
                 "readers_count": rng.randrange(2, 50), "score": round(rng.random() * 20, 1), "yours": False,
                 "topic_id": topic_id, "topic_slug": slug, "display_username": m.author.display,
                 "primary_group_name": None, "flair_name": None, "flair_url": None, "flair_bg_color": None,
                 "flair_color": None, "version": 1, "can_edit": False, "can_delete": False, "can_recover": False,
                 "can_wiki": False, "read": True, "user_title": None, "bookmarked": False, "actions_summary": [],
                 "moderator": False, "admin": False, "staff": False, "user_id": m.author.native_id, "hidden": False,
                 "trust_level": rng.randrange(0, 4), "deleted_at": None, "user_deleted": False, "edit_reason": None,
                 "can_view_edit_history": True, "wiki": False, "mentioned_users": []}
            if parent:
                p["reply_to_user"] = {"username": parent.author.handle, "name": parent.author.display,
                                      "avatar_template": p["avatar_template"]}
            posts.append(p)
        # A moderator closes the topic: an action post (post_type 3), not speech.
        number += 1
        posts.append(dict(posts[-1], id=41000 + topic_id * 100 + number, post_number=number, post_type=3,
                          action_code="closed.enabled", cooked="", reply_to_post_number=None,
                          created_at=_discourse_time(msgs[-1].t + 3600), updated_at=_discourse_time(msgs[-1].t + 3600)))
        posts[-1].pop("reply_to_user", None)
        for p in posts:
            p["posts_count"] = len(posts)
        planted.pii_in("discourse", os.path.join(forum, f"t_{topic_id}_posts.json"), pii)
        # Pages: the first page ascending; then `?post_number=N` pages, descending, before N.
        pages = [("", posts[:20])]
        for start in range(21, posts[-1]["post_number"] + 20, 20):
            pages.append((f"_pn_{start}", [p for p in reversed(posts) if p["post_number"] < start][:20]))
        for k, (suffix, page) in enumerate(pages):
            page = [dict(p) for p in page]
            if k == 1 and page:
                # Fetched a day later: one post was edited in between (latest updated_at/version wins).
                q = page[len(page) // 2]
                q.update(version=2, updated_at=_discourse_time(t0 + 86400 * 400), edit_reason="typo",
                         cooked=q["cooked"] + "\n<p>(edited: fixed a typo)</p>")
            if ti == 0 and suffix == "_pn_41":
                speech = next(p for p in page if p["post_type"] == 1)
                bad = dict(speech, created_at="last tuesday", id=page[0]["id"] + 99,
                           post_number=page[0]["post_number"] + 1, reply_to_post_number=None)
                bad.pop("reply_to_user", None)
                page.insert(0, bad)
                planted.break_("discourse", os.path.join(forum, f"t_{topic_id}_posts{suffix}.json"), "bad_time",
                               "a post whose created_at is 'last tuesday'")
            path = os.path.join(forum, f"t_{topic_id}_posts{suffix}.json")
            _write(path, _json({"post_stream": {"posts": page}, "id": topic_id}, indent=2, ascii=False).encode())
            planted.wrote("discourse", path, len(page))
        seen: dict[int, int] = {}
        for _, page in pages:
            for p in page:
                if p["post_type"] == 1:  # action posts are skipped by policy, not duplicated messages
                    seen[p["id"]] = seen.get(p["id"], 0) + 1
        for pid, n_copies in sorted(seen.items()):
            if n_copies > 1:
                planted.record_duplicates.append({"format": "discourse", "message_id": f"discourse:{DISCOURSE_FORUM}:{pid}",
                                                  "copies": n_copies,
                                                  "why": "the same post on overlapping pages"})
        if ti == 1:
            path = os.path.join(forum, f"t_{topic_id}_posts_pn_{pages[-1][1][0]['post_number'] + 41}.json")
            _write(path, b"")
            planted.wrote("discourse", path, 0)
            planted.break_("discourse", path, "empty_file", "a 0-byte page (a failed fetch)")
