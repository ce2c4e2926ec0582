"""Shared machinery of the sample writers: the people who talk, the record of what was planted
(``planted.json``) and the small time, id and file helpers every format writer uses.

The conversation text itself is in :mod:`pipelines.sample.talk`; one module per format
(named as the reader in ``pipelines/sources/`` that reads it) writes the files.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import datetime, timezone

from schemas import QUARANTINE_REASONS


UTC = timezone.utc


# ---------------------------------------------------------------------------------------
# People
# ---------------------------------------------------------------------------------------

FIRST = ("Kestrel", "Marisol", "Tobias", "Ingrid", "Oswin", "Perpetua", "Ravindra", "Solveig", "Thaddeus",
         "Wilhelmina", "Anselm", "Beatrix", "Cosimo", "Delphine", "Evander", "Fenna", "Gideon", "Hyacinth",
         "Isidore", "Jessamy", "Leopold", "Mireille", "Nikolai", "Octavia", "Peregrine", "Quirina", "Rosalind",
         "Severin", "Tamsin", "Ulrike", "Valentin", "Winifred", "Xanthe", "Yevgenia", "Zebulon", "Araminta",
         "Barnaby", "Clementine", "Dorian", "Esmeralda")
LAST = ("Byrne", "Vega", "Fenwick", "Halvorsen", "Quayle", "Okonkwo", "Lindqvist", "Marchetti", "Ashdown",
        "Pemberton", "Drummond", "Castellanos", "Abernathy", "Kowalczyk", "Ferreira", "Nakamura", "Oyelaran",
        "Whitcombe", "Zielinski", "Thorvaldsen", "Baptiste", "Carrow", "Dunmore", "Eskildsen", "Fairweather",
        "Galbraith", "Hollingsworth", "Iverson", "Jablonski", "Kittredge", "Larkspur", "Montgomery",
        "Northcott", "Ostrander", "Prendergast", "Ravenscroft", "Sandoval", "Trevelyan", "Underhill", "Vasquez")


@dataclass
class Person:
    native_id: str  # the platform's author id (or the handle where the platform has no ids)
    handle: str  # login / username / nick
    display: str  # display name as shown next to messages
    kind: str = "user"  # user, bot, deleted


def make_people(rng: random.Random, n: int, style: str, id_fn) -> list[Person]:
    """``n`` distinct people with handles in a platform-typical ``style``."""
    people, seen = [], set()
    misses = 0
    while len(people) < n:
        f, l = rng.choice(FIRST), rng.choice(LAST)
        if misses > 200:  # the name pool is used up (very large scales): reuse names, number the handles
            f, l = f, f"{l}{len(people)}"
        num = rng.randrange(10, 99)
        handle = {
            "reddit": rng.choice([f"{f}{l}{num}", f"{f.lower()}_{l.lower()}", f"{l}_{f}", f"the_{f.lower()}{num}"]),
            "nick": rng.choice([f"{f.lower()}", f"{f.lower()}_", f"{f[:4].lower()}{l[:3].lower()}", f"{l.lower()}{num}"]),
            "login": f"{f.lower()}.{l.lower()}" if rng.random() < 0.5 else f"{f.lower()}{l[0].lower()}",
            "display": f"{f}{l}",
        }[style]
        if handle.lower() in seen or f"{f} {l}".lower() in seen:
            misses += 1
            continue
        misses = 0
        seen.add(handle.lower())
        seen.add(f"{f} {l}".lower())
        people.append(Person(id_fn(len(people)), handle, f"{f} {l}"))
    return people


# ---------------------------------------------------------------------------------------
# What was planted (planted.json)
# ---------------------------------------------------------------------------------------

class Planted:
    """What the generator planted, written to ``planted.json``."""

    def __init__(self, root: str):
        self.root = root
        self.pii: list[dict] = []
        self.author_names: set[str] = set()
        self.bot_names: set[str] = set()
        self.broken: list[dict] = []
        self.near_duplicates: list[dict] = []
        self.record_duplicates: list[dict] = []
        self.records: dict[str, int] = {}
        self.files: dict[str, int] = {}

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    def people(self, people: list[Person]) -> None:
        for p in people:
            names = {p.handle, p.display} - {None, ""}
            (self.bot_names if p.kind == "bot" else self.author_names).update(names)

    def break_(self, fmt: str, path: str, reason: str, what: str) -> None:
        assert reason in QUARANTINE_REASONS, reason
        self.broken.append({"format": fmt, "file": self.rel(path), "reason": reason, "what": what})

    def pii_in(self, fmt: str, path: str, items: list[tuple[str, str]]) -> None:
        for typ, value, *shown in items:
            entry = {"type": typ, "value": value, "format": fmt, "file": self.rel(path)}
            if shown:  # how the reader renders it in `text` (Slack `<@U…>` becomes `@name`)
                entry["shown_as"] = shown[0]
            self.pii.append(entry)

    def wrote(self, fmt: str, path: str, records: int) -> None:
        self.files[fmt] = self.files.get(fmt, 0) + 1
        self.records[fmt] = self.records.get(fmt, 0) + records

    def as_json(self) -> dict:
        return {
            "pii": self.pii,
            "author_names": sorted(self.author_names),
            "bot_names": sorted(self.bot_names),
            "broken": self.broken,
            "near_duplicates": self.near_duplicates,
            "record_duplicates": self.record_duplicates,
        }


# ---------------------------------------------------------------------------------------
# Times, ids and files
# ---------------------------------------------------------------------------------------

def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def b36(n: int) -> str:
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = chars[r] + s
        if n == 0:
            return s


def hash_int(s: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    h = 0
    for ch in s.encode("utf-8"):
        h = (h * 131 + ch) % (1 << 61)
    return h


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _json(obj, indent=None, ascii=True, sort=False, seps=None) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=ascii, sort_keys=sort, separators=seps)
