"""Reddit: Pushshift / Arctic Shift monthly dumps (``RC_/RS_YYYY-MM.zst``), read by
:mod:`pipelines.sources.reddit`.
"""

from __future__ import annotations

import html
import os
import random
from datetime import datetime

import zstandard

from pipelines.sample.common import UTC, Person, Planted, _json, _write, b36, dt, hash_int, make_people
from pipelines.sample.talk import COPYPASTA, TOPICS, Talk, lightly_edit, long_text


# Pushshift monthly dumps are one zstd frame with no content size and a declared 2 GiB
# window (`zstd --long=31`). Streaming compression (no pledged size) keeps windowLog 31 in
# the frame header; the compressor only touches memory for the bytes it has seen, so
# writing a small file with it costs megabytes, not the window (measured: docs/sample.md).
ZSTD_WINDOW_LOG = 31
ZSTD_LEVEL = 3


def zstd_long(data: bytes) -> bytes:
    """One zstd frame like a Pushshift dump: content size unknown, 2 GiB window declared, checksum."""
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG,
                                                            write_checksum=True, write_content_size=False)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return cobj.compress(data) + cobj.flush()


REDDIT_MONTHS = ((2021, 3), (2021, 4), (2021, 5))  # two full months, then a truncated third
SUBREDDITS = (("Sourdough", "t5_2s1t4", "sourdough"), ("bikewrench", "t5_2r4kg", "bikes"),
              ("HomeNetworking", "t5_2s9y5", "homelab"), ("gardening", "t5_2qhrb", "gardening"))


def _month_start(y: int, m: int) -> float:
    return datetime(y, m, 1, tzinfo=UTC).timestamp()


def _reddit_comment_2020(c: dict) -> dict:
    """A comment line the way 2020-era Pushshift dumps write it (int times, awards fields)."""
    deleted = c["author"] == "[deleted]"
    return {
        "all_awardings": [], "associated_award": None, "author": c["author"],
        "author_created_utc": None if deleted else c["author_created"],
        "author_flair_background_color": None, "author_flair_css_class": None, "author_flair_richtext": [],
        "author_flair_template_id": None, "author_flair_text": None, "author_flair_text_color": None,
        "author_flair_type": "text", **({} if deleted else {"author_fullname": c["author_fullname"]}),
        "author_patreon_flair": False, "author_premium": False, "awarders": [], "body": c["body"],
        "can_gild": True, "can_mod_post": False, "collapsed": False, "collapsed_because_crowd_control": None,
        "collapsed_reason": None, "controversiality": 0, "created_utc": c["created_utc"],
        "distinguished": c.get("distinguished"), "edited": c.get("edited", False), "gilded": 0, "gildings": {},
        "id": c["id"], "is_submitter": c["is_submitter"], "link_id": c["link_id"], "locked": False,
        "no_follow": True, "parent_id": c["parent_id"], "permalink": c["permalink"], "retrieved_on": c["retrieved_on"],
        "score": c["score"], "send_replies": True, "stickied": c.get("stickied", False), "subreddit": c["subreddit"],
        "subreddit_id": c["subreddit_id"], "subreddit_name_prefixed": "r/" + c["subreddit"],
        "subreddit_type": "public", "total_awards_received": 0, "treatment_tags": [],
    }


def _reddit_comment_2024(c: dict) -> dict:
    """A comment line the way Arctic Shift writes 2024 dumps (float times, `_meta`, `name`)."""
    d = _reddit_comment_2020(c)
    d["created_utc"] = float(c["created_utc"])
    d["created"] = float(c["created_utc"])
    d["name"] = "t1_" + c["id"]
    d["_meta"] = {"retrieved_2nd_on": c["retrieved_on"] + 129600}
    d["author_is_blocked"] = False
    d["replies"] = ""
    d.pop("author_created_utc", None)
    return d


def _reddit_submission(s: dict) -> dict:
    """A submission line like the 2012-era dumps (string `created_utc`)."""
    return {
        "archived": False, "author": s["author"], "author_flair_css_class": None, "author_flair_text": None,
        "created_utc": str(int(s["created_utc"])), "distinguished": None, "domain": s["domain"],
        "downs": 0, "edited": False, "gilded": 0, "hide_score": False, "id": s["id"], "is_self": s["is_self"],
        "link_flair_css_class": None, "link_flair_text": None, "media": None, "media_embed": {},
        "name": "t3_" + s["id"], "num_comments": s["num_comments"], "over_18": False,
        "permalink": s["permalink"], "quarantine": False, "retrieved_on": s["retrieved_on"], "score": s["score"],
        "secure_media": None, "secure_media_embed": {}, "selftext": s["selftext"], "stickied": False,
        "subreddit": s["subreddit"], "subreddit_id": s["subreddit_id"], "thumbnail": "self" if s["is_self"] else "default",
        "title": s["title"], "ups": s["score"], "url": s["url"],
        **({"crosspost_parent": s["crosspost_parent"], "crosspost_parent_list": s["crosspost_parent_list"]}
           if "crosspost_parent" in s else {}),
    }


def _reddit_escape(text: str) -> str:
    # Reddit stores bodies with &, < and > as HTML entities and often with \r\n line ends.
    return html.escape(text, quote=False)


def write_reddit(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    out = os.path.join(root, "reddit")
    people = make_people(rng, 40 + 15 * scale, "reddit", lambda i: None)
    for p in people:
        p.native_id = p.handle  # Pushshift identifies authors by name
    automod = Person("AutoModerator", "AutoModerator", "AutoModerator", "bot")
    deleted = Person(None, "[deleted]", "[deleted]", "deleted")
    spammers = make_people(random.Random(rng.random()), 4, "reddit", lambda i: None)
    for p in spammers:
        p.native_id = p.handle
    planted.people(people + spammers + [automod])
    talk = Talk(rng, "reddit")
    sub_counter = int("m0a000", 36)
    com_counter = int("gs00000", 36)
    comments: dict[tuple[int, int], list[dict]] = {m: [] for m in REDDIT_MONTHS}
    submissions: dict[tuple[int, int], list[dict]] = {m: [] for m in REDDIT_MONTHS}
    n_threads = 14 * scale
    long_bodies: list[tuple[dict, str]] = []

    def month_of(ts: float) -> tuple[int, int]:
        d = dt(ts)
        return (d.year, d.month)

    last_start = _month_start(2021, 6) - 3 * 86400
    first_start = _month_start(*REDDIT_MONTHS[0])
    for ti in range(n_threads + 4 * scale):
        third = ti >= n_threads  # threads of the truncated third month
        sub, sub_id, topic = SUBREDDITS[ti % len(SUBREDDITS)]
        if third:
            start = rng.uniform(_month_start(2021, 5) + 86400, last_start)
        elif ti in (1, 2):  # started on the last evening of month a: the replies run into month b's file
            start = _month_start(*REDDIT_MONTHS[1]) - rng.uniform(3600, 4 * 3600)
        else:
            start = rng.uniform(first_start, _month_start(2021, 5) - 86400 * 2)
        msgs = talk.thread(topic, people, rng.randrange(15, 60), start, mean_gap=rng.choice([300, 1800, 7200]),
                           allow_pii=not third)
        sid = b36(sub_counter)
        sub_counter += rng.randrange(1, 400)
        op = msgs[0]
        title = op.text.split("?")[0][:120] + "?"
        slug = "_".join(title.lower().replace("?", "").split()[:8])
        permalink = f"/r/{sub}/comments/{sid}/{slug}/"
        s = dict(id=sid, author=op.author.handle, created_utc=op.t, domain=f"self.{sub}", is_self=True,
                 num_comments=len(msgs) - 1, permalink=permalink, retrieved_on=int(op.t) + 86400 * 40,
                 score=rng.randrange(1, 500), selftext=_reddit_escape(op.text), subreddit=sub, subreddit_id=sub_id,
                 title=_reddit_escape(title), url=f"https://www.reddit.com{permalink}", _pii=op.pii)
        if not third:
            submissions[month_of(op.t)].append(s)
        ids: list[str] = []
        for i, m in enumerate(msgs[1:], start=1):
            cid = b36(com_counter)
            com_counter += rng.randrange(1, 50)
            ids.append(cid)
            author = m.author
            body = _reddit_escape(m.text)
            if rng.random() < 0.2:
                body = body.replace(". ", ".\r\n\r\n", 1)
            r = rng.random()
            if r < 0.04:
                author, body = deleted, rng.choice(["[deleted]", "[removed]"])
                m.pii = []
            elif r < 0.07:
                author = deleted  # the account is gone, the text is kept
            if rng.random() < 0.03:
                body += " &amp; I mean it &gt;:("
            parent = f"t3_{sid}" if m.parent in (None, 0) else f"t1_{ids[m.parent - 1]}"
            c = dict(id=cid, author=author.handle, author_created=1_400_000_000 + hash_int(author.handle) % 200_000_000,
                     author_fullname="t2_" + b36(hash_int(author.handle) % 10**9), body=body,
                     created_utc=int(m.t), is_submitter=author is op.author, link_id=f"t3_{sid}", parent_id=parent,
                     permalink=f"{permalink}{cid}/", retrieved_on=int(m.t) + rng.randrange(3600, 86400 * 30),
                     score=rng.randrange(-3, 120), subreddit=sub, subreddit_id=sub_id, _pii=m.pii)
            if rng.random() < 0.06:
                c["edited"] = int(m.t) + rng.randrange(60, 7200)
            comments[month_of(m.t) if not third else REDDIT_MONTHS[2]].append(c)
            if author is not deleted and not m.pii and not m.short and month_of(m.t) == REDDIT_MONTHS[0]:
                long_bodies.append((c, topic))
        # AutoModerator sticky on some threads, right after the submission.
        if ti % 5 == 0:
            cid = b36(com_counter)
            com_counter += 7
            comments[month_of(op.t + 5) if not third else REDDIT_MONTHS[2]].append(dict(
                id=cid, author="AutoModerator", author_created=1_325_741_068, author_fullname="t2_6l4z3",
                body=_reddit_escape("Thanks for posting to r/" + sub + "! Please read the rules in the sidebar. "
                                    "*I am a bot, and this action was performed automatically.*"),
                created_utc=int(op.t) + 5, is_submitter=False, link_id=f"t3_{sid}", parent_id=f"t3_{sid}",
                permalink=f"{permalink}{cid}/", retrieved_on=int(op.t) + 86400, score=1, subreddit=sub,
                subreddit_id=sub_id, distinguished="moderator", stickied=True, _pii=[]))
        # A reply to a comment that was never archived (a dangling parent).
        if ti % 7 == 3 and not third:
            cid = b36(com_counter)
            com_counter += 3
            m = talk.text(TOPICS[topic], rng.choice(people), msgs[-1], msgs, allow_pii=False)
            comments[month_of(msgs[-1].t + 60)].append(dict(
                id=cid, author=m.author.handle, author_created=1_500_000_000, author_fullname="t2_" + b36(cid_int(cid)),
                body=_reddit_escape(m.text), created_utc=int(msgs[-1].t) + 60, is_submitter=False,
                link_id=f"t3_{sid}", parent_id="t1_zz" + b36(ti), permalink=f"{permalink}{cid}/",
                retrieved_on=int(msgs[-1].t) + 90000, score=1, subreddit=sub, subreddit_id=sub_id, _pii=m.pii))

    a, b, c3 = REDDIT_MONTHS
    # Copypasta posted by several accounts (a near-duplicate cluster) across both months.
    cluster = []
    for k, sp in enumerate(spammers):
        host = rng.choice(comments[a] + comments[b])
        cid = b36(com_counter)
        com_counter += 11
        text = COPYPASTA.format(thing="sourdough starter")
        if k % 2:
            text = text.replace("I'd just like", "I would just like")
        ts = host["created_utc"] + 30
        comments[month_of(ts)].append(dict(
            id=cid, author=sp.handle, author_created=1_600_000_000 + k, author_fullname="t2_" + b36(1000 + k),
            body=_reddit_escape(text), created_utc=ts, is_submitter=False, link_id=host["link_id"],
            parent_id="t1_" + host["id"], permalink=f"/r/{host['subreddit']}/comments/x/{cid}/",
            retrieved_on=ts + 7200, score=-5, subreddit=host["subreddit"], subreddit_id=host["subreddit_id"], _pii=[]))
        cluster.append(f"reddit:t1_{cid}")
    planted.near_duplicates.append({"format": "reddit", "kind": "copypasta", "message_ids": cluster})
    # A lightly edited repost of a long comment by someone else, weeks later.
    for orig, topic in rng.sample(long_bodies, 2):
        text = long_text(rng, topic)
        orig["body"] = _reddit_escape(text)
        cid = b36(com_counter)
        com_counter += 13
        ts = orig["created_utc"] + 86400 * 9
        other = rng.choice([p for p in people if p.handle != orig["author"]])
        comments[month_of(ts) if month_of(ts) in (a, b) else b].append(dict(
            orig, id=cid, author=other.handle, body=_reddit_escape(lightly_edit(rng, text)), created_utc=ts,
            permalink=orig["permalink"].rsplit("/", 2)[0] + f"/{cid}/", retrieved_on=ts + 3600, _pii=[],
            parent_id=orig["link_id"], edited=False))
        planted.near_duplicates.append({"format": "reddit", "kind": "light_edit",
                                        "message_ids": [f"reddit:t1_{orig['id']}", f"reddit:t1_{cid}"]})

    # A crosspost in month b of a submission from month a: the embedded original is not a message.
    orig = submissions[a][0]
    xid = b36(sub_counter + 17)
    xp = dict(id=xid, author=rng.choice(people).handle, created_utc=_month_start(*b) + 3 * 86400 + 777,
              domain="self." + orig["subreddit"], is_self=False, num_comments=0,
              permalink=f"/r/{SUBREDDITS[1][0]}/comments/{xid}/crosspost/", retrieved_on=int(_month_start(*b)) + 86400 * 40,
              score=12, selftext="", subreddit=SUBREDDITS[1][0], subreddit_id=SUBREDDITS[1][1],
              title=orig["title"], url=orig["url"], crosspost_parent="t3_" + orig["id"],
              crosspost_parent_list=[_reddit_submission(orig)], _pii=[])
    submissions[b].append(xp)

    # Re-crawled copies: the same comments again in month b's file, retrieved later, edited.
    recrawled = [x for x in comments[a] if x["author"] not in ("[deleted]", "AutoModerator") and not x["_pii"]][:5 + scale]
    for x in recrawled:
        comments[b].append(dict(x, body=x["body"] + "\r\n\r\nEDIT: fixed a typo", edited=x["created_utc"] + 3000,
                                retrieved_on=x["retrieved_on"] + 86400 * 60))
        planted.record_duplicates.append({"format": "reddit", "message_id": f"reddit:t1_{x['id']}", "copies": 2,
                                          "why": "re-crawled copy in a later month file, edited body"})

    def lines_of(month, items, style) -> list[bytes]:
        out_lines = []
        for x in items:
            d = {"2020": _reddit_comment_2020, "2024": _reddit_comment_2024, "sub": _reddit_submission}[style](x)
            if style == "2020":
                keys = list(d)
                rng.shuffle(keys)  # old dumps change key order from line to line
                line = _json({k: d[k] for k in keys}, seps=(",", ":"))
            elif style == "2024":
                line = _json(d, sort=True)
            else:
                line = _json(d, seps=(",", ":"))
            out_lines.append(line.encode("utf-8"))
        return out_lines

    def unsort(items: list[dict]) -> list[dict]:
        items = sorted(items, key=lambda x: (x["created_utc"], x["id"]))
        for _ in range(len(items) // 10):  # dumps are only roughly time-ordered
            i = rng.randrange(len(items))
            j = min(len(items) - 1, i + rng.randrange(1, 6))
            items[i], items[j] = items[j], items[i]
        return items

    def month_name(kind, ym):
        return os.path.join(out, f"{kind}_{ym[0]}-{ym[1]:02d}.zst")

    # Month a: 2020-era comment lines (int created_utc) plus broken lines.
    path = month_name("RC", a)
    items = unsort(comments[a])
    lines = lines_of(a, items, "2020")
    bad_json = b'{"author":"' + people[0].handle.encode() + b'","body":"this line was cut off in the middle of'
    lines.insert(len(lines) // 3, bad_json)
    planted.break_("reddit", path, "invalid_json", "a line cut off in the middle of a string")
    good = lines[len(lines) // 2]
    bad_utf8 = good.replace(b'"body":"', b'"body":"caf\xe9 \xff\xfe ', 1)
    lines.insert(len(lines) // 2, bad_utf8)
    planted.break_("reddit", path, "invalid_utf8", "a line with Latin-1 and 0xFF bytes inside the body")
    _write(path, zstd_long(b"\n".join(lines) + b"\n"))
    planted.wrote("reddit", path, len(lines))
    planted.pii_in("reddit", path, [p for x in items for p in x["_pii"]])

    # Month b: 2024-era lines (float created_utc, _meta), recrawls, a bad time and a missing id.
    path = month_name("RC", b)
    items = unsort(comments[b])
    lines = lines_of(b, items, "2024")
    bad = dict(_reddit_comment_2024(items[3]), created_utc="yesterday", id="gzzzzz1")
    lines.insert(7, _json(bad, sort=True).encode())
    planted.break_("reddit", path, "bad_time", "`created_utc` is the string 'yesterday'")
    noid = _reddit_comment_2024(items[5])
    noid = {k: v for k, v in noid.items() if k not in ("id", "name")}
    noid["body"] = "this record lost its id somewhere"
    lines.insert(len(lines) - 4, _json(noid, sort=True).encode())
    planted.break_("reddit", path, "missing_field", "a comment without `id` or `name`")
    _write(path, zstd_long(b"\n".join(lines) + b"\n"))
    planted.wrote("reddit", path, len(lines))
    planted.pii_in("reddit", path, [p for x in items for p in x["_pii"]])

    # Submissions for a and b (string created_utc), one crosspost.
    for ym in (a, b):
        path = month_name("RS", ym)
        items = unsort(submissions[ym])
        _write(path, zstd_long(b"\n".join(lines_of(ym, items, "sub")) + b"\n"))
        planted.wrote("reddit", path, len(items))
        planted.pii_in("reddit", path, [p for x in items for p in x["_pii"]])

    # Month c: a download cut short. Only the part before the cut decodes; its last line is partial.
    path = month_name("RC", c3)
    items = unsort(comments[c3])
    full = zstd_long(b"\n".join(lines_of(c3, items, "2020")) + b"\n")
    _write(path, full[: int(len(full) * 0.6)])
    planted.wrote("reddit", path, len(items))
    planted.break_("reddit", path, "truncated", "the .zst file ends 40% before the end of its frame")
    # PII in the part that still decodes must go too (the rest is lost with the cut).
    planted.pii_in("reddit", path, [p for x in items for p in x["_pii"]])
    # An empty submissions file for month c (a failed download).
    path = month_name("RS", c3)
    _write(path, b"")
    planted.wrote("reddit", path, 0)
    planted.break_("reddit", path, "empty_file", "a 0-byte .zst file")


def cid_int(cid: str) -> int:
    return int(cid, 36)
