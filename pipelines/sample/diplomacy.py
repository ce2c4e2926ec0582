"""Diplomacy: "It Takes Two to Lie" JSONL, one dialog per line, parallel arrays, read by
:mod:`pipelines.sources.diplomacy`.
"""

from __future__ import annotations

import os
import random

from pipelines.sample.common import Planted, _json, _write


POWERS = ("austria", "england", "france", "germany", "italy", "russia", "turkey")
DIPLO_LINES = [
    "Hello {to}! I'd like to keep our border quiet this year. Are you open to a non-aggression pact?",
    "I'm moving into {place} this turn, please don't read it as hostile.",
    "Can you support me into {place}? I'll return the favour in the fall.",
    "I won't attack you, you have my word.",
    "Honestly {third} has been asking me to turn on you. I said no.",
    "Let's coordinate against {third}, they are getting too big.",
    "What are your plans for {place}?",
    "Sounds good to me.",
    "Deal.",
    "I think {third} is lying to both of us.",
    "I'll bounce you in {place} unless we agree on something now.",
    "Sorry for the late reply, busy week. I'm still on board with the plan.",
]
DIPLO_EXTRA = [
    "If {third} moves on {place} we should talk again.",
    "My army in {place} stays put either way.",
    "I can give you {place} by {year} if this works out.",
    "{third} is too quiet, that worries me.",
    "Last game {third} stabbed me in {place}, so forgive the caution.",
    "I'd rather build fleets than armies this year.",
    "Let me know before the {season} deadline.",
    "We can revisit {place} after the {season} moves.",
    "Trust has to start somewhere, and {place} is a good test.",
    "I'll show you my orders for {place} if you want.",
    "Nothing personal, I just need {place} to survive.",
    "Between us, {third} offered me {place} yesterday.",
    "I haven't decided about {place} yet, honestly.",
    "Your fleet near {place} makes me nervous.",
    "The board looks very different after {year}, so let's plan ahead.",
    "I told {third} I'd stay neutral, which is mostly true.",
    "Can we agree on a DMZ around {place}?",
    "{third} keeps asking about your plans, I told them nothing.",
    "Ping me if anything changes with {third}.",
]
PLACES = ("Munich", "Tyrolia", "Galicia", "the Black Sea", "Belgium", "Holland", "Burgundy", "the Channel",
          "Piedmont", "Serbia", "Rumania", "Sweden", "Venice", "Trieste")


def write_diplomacy(root: str, rng: random.Random, scale: int, planted: Planted) -> None:
    path = os.path.join(root, "diplomacy", "train.jsonl")
    lines: list[str] = []
    n_msgs = 0
    for game in range(1, 1 + scale):
        pairs = rng.sample([(a, b) for i, a in enumerate(POWERS) for b in POWERS[i + 1:]], 9)
        dialogs = {pair: [] for pair in pairs}
        # Draw the game's messages in one global order; absolute_message_index is dense per game.
        total = rng.randrange(260, 340)
        for idx in range(total):
            pair = rng.choice(pairs)
            sender, receiver = pair if rng.random() < 0.5 else pair[::-1]
            third = rng.choice([p for p in POWERS if p not in pair])
            text = rng.choice(DIPLO_LINES).format(to=receiver.capitalize(), place=rng.choice(PLACES),
                                                  third=third.capitalize())
            extras = [f.format(place=rng.choice(PLACES), third=third.capitalize(), year=1902 + idx * 6 // total,
                               season=rng.choice(("Spring", "Fall"))) for f in rng.sample(DIPLO_EXTRA, 2)]
            text = " ".join([extras[0], text, extras[1]] if rng.random() < 0.5 else [text, *extras])
            year = 1901 + idx * 6 // total
            season = ("Spring", "Fall", "Winter")[min(2, (idx * 18 // total) % 3)]
            dialogs[pair].append(dict(text=text, sender=sender, receiver=receiver, idx=idx, year=year, season=season))
        # A double-sent message: the same text twice in a row (consecutive indices).
        first_pair = pairs[0]
        ms = dialogs[first_pair]
        k = len(ms) // 2
        double = dict(ms[k])
        dialogs[first_pair].insert(k + 1, double)
        # Re-number so absolute_message_index stays dense 0..N-1 with the doubled message in it.
        order = sorted(((m["idx"], j, pair) for pair in pairs for j, m in enumerate(dialogs[pair])))
        for new_idx, (_, j, pair) in enumerate(order):
            dialogs[pair][j] = dict(dialogs[pair][j], idx=new_idx)
        planted.near_duplicates.append({"format": "diplomacy", "kind": "double_sent",
                                        "message_ids": [f"diplomacy:{game}:{dialogs[first_pair][k]['idx']}",
                                                        f"diplomacy:{game}:{dialogs[first_pair][k + 1]['idx']}"]})
        for pair in pairs:
            ms = dialogs[pair]
            n_msgs += len(ms)
            score = {p: rng.randrange(3, 6) for p in pair}
            d = {
                "messages": [m["text"] for m in ms],
                "sender_labels": [rng.random() > 0.08 for _ in ms],
                "receiver_labels": [rng.choice([True, True, True, False, "NOANNOTATION"]) for _ in ms],
                "speakers": [m["sender"] for m in ms],
                "receivers": [m["receiver"] for m in ms],
                "absolute_message_index": [m["idx"] for m in ms],
                "relative_message_index": list(range(len(ms))),
                "seasons": [m["season"] for m in ms],
                "years": [str(m["year"]) for m in ms],
                "game_score": [str(score[m["sender"]]) for m in ms],
                "game_score_delta": [str(score[m["sender"]] - score[m["receiver"]]) for m in ms],
                "players": list(pair),
                "game_id": game,
            }
            lines.append(_json(d))
        # Some dialogs in the real data are empty (the powers never wrote to each other).
        lonely = [(a, b) for i, a in enumerate(POWERS) for b in POWERS[i + 1:] if (a, b) not in pairs][0]
        lines.append(_json({k: [] for k in ("messages", "sender_labels", "receiver_labels", "speakers",
                                            "receivers", "absolute_message_index", "relative_message_index",
                                            "seasons", "years", "game_score", "game_score_delta")}
                           | {"players": list(lonely), "game_id": game}))
    lines.insert(len(lines) // 2, lines[0][: len(lines[0]) // 2])
    planted.break_("diplomacy", path, "invalid_json", "a dialog line cut off in the middle")
    _write(path, ("\n".join(lines) + "\n").encode("ascii"))
    planted.wrote("diplomacy", path, n_msgs + 1)
