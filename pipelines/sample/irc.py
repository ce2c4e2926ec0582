"""IRC: irclogs-style day files, <network>/YYYY/MM/DD/#channel.txt, read by
:mod:`pipelines.sources.irc`.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta

from pipelines.sample.common import UTC, Planted, _write, dt, make_people
from pipelines.sample.talk import Talk


def write_irc(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    network, channel = "libera", "#homelab"
    people = make_people(rng, 14 + 4 * scale, "nick", lambda i: None)
    for p in people:
        p.native_id = p.handle
        p.display = p.handle
    planted.people(people)
    planted.bot_names.add("labbot")
    talk = Talk(rng, "irc", pii_rate=0.04)
    start = datetime(2022, 5, 2, tzinfo=UTC)
    renamed = people[0]
    old_nick = renamed.handle
    new_nick = old_nick.rstrip("_") + "_away"
    planted.author_names.add(new_nick)
    n_days = 4 + 2 * scale
    for day in range(n_days):
        d0 = start + timedelta(days=day)
        path = os.path.join(root, "irc", network, f"{d0:%Y}", f"{d0:%m}", f"{d0:%d}", f"{channel}.txt")
        lines: list[str] = []
        pii = []
        t = d0.timestamp() + rng.randrange(0, 3600)
        if day == 0:
            lines.append(f"=== {people[1].handle} changed the topic of {channel} to: self-hosting, routers, NAS boxes "
                         "| be patient, people answer")
        for conv in range(6 + 2 * scale):
            present = rng.sample(people, 5)
            msgs = talk.thread("homelab", present, rng.randrange(5, 14), t, mean_gap=50, tree=False)
            for m in msgs:
                nick = m.author.handle if not (m.author is renamed and day >= 1) else new_nick
                hhmm = dt(m.t).strftime("%H:%M")
                if dt(m.t).date() != d0.date():
                    break
                pii.extend(m.pii)
                if rng.random() < 0.05:
                    lines.append(f"[{hhmm}]  * {nick} {rng.choice(['reboots the router', 'goes to get coffee', 'sighs'])}")
                lines.append(f"[{hhmm}] <{nick}> {m.text.replace(old_nick + ':', new_nick + ':') if day >= 1 else m.text}")
                if rng.random() < 0.04:
                    lines.append(f"[{hhmm}] <{nick}> !wiki vlan")
                    lines.append(f"[{hhmm}] <labbot> vlan: see https://wiki.example.org/VLAN for the channel guide")
            t = msgs[-1].t + rng.randrange(600, 5000)
            if rng.random() < 0.3:
                j = rng.choice(people).handle
                lines.append(f"=== {j} [~{j}@user/{j}] has joined {channel}")
            if t > d0.timestamp() + 86000:
                break
        if day == 0:
            # A rename late on day 0; the author speaks as the new nick from day 1 on.
            lines.append(f"=== {old_nick} is now known as {new_nick}")
        if day == 1:
            lines.insert(len(lines) // 2, "%%%%%% logger restarted \x07 ???")
            planted.break_("irc", path, "unparsable_line", "a line that is neither a message, an action nor a system line")
        _write(path, ("\n".join(lines) + "\n").encode("utf-8"))
        planted.wrote("irc", path, len(lines))
        planted.pii_in("irc", path, pii)
