"""`socialcorpus sample`: synthetic demo dumps in every format, in each format's real on-disk layout.

This is the demo corpus: the project never ships copies of real dumps. Every file is
written the way the real tool writes it (a long-window `.zst` for Reddit, an export
folder and a `.zip` for Slack, `result.json` for Telegram, dated day logs for IRC, …),
with the awkward parts real data has: threads across month files, deleted accounts,
bots, edits, re-crawled and re-exported copies, spam posted by several accounts,
planted PII and a few deliberately broken records.

Besides the dumps it writes ``corpus.toml`` (the demo corpus configuration) and
``planted.json`` (what was planted where, so tests can check that PII is gone, that
every broken record lands in quarantine with its reason, and that duplicates are found).

Deterministic: the same ``seed`` and ``scale`` give byte-identical files (no wall-clock
time, fixed key orders, fixed zstd parameters, fixed zip timestamps).
"""

from __future__ import annotations

import html
import json
import os
import random
import string
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import zstandard

from pipelines.sample import signal as sample_signal
from schemas import QUARANTINE_REASONS

# Pushshift monthly dumps are one zstd frame with no content size and a declared 2 GiB
# window (`zstd --long=31`). Streaming compression (no pledged size) keeps windowLog 31 in
# the frame header; the compressor only touches memory for the bytes it has seen, so
# writing a small file with it costs megabytes, not the window (measured: docs/sample.md).
ZSTD_WINDOW_LOG = 31
ZSTD_LEVEL = 3

UTC = timezone.utc
DEMO_SECRET = "socialcorpus-demo-secret-DO-NOT-USE-IN-PRODUCTION"

# ---------------------------------------------------------------------------------------
# People and content
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


TOPICS = {
    "sourdough": dict(
        things=["starter", "levain", "dough", "crumb", "crust", "banneton", "dutch oven", "rye loaf", "focaccia"],
        problems=["a gummy crumb", "a flat loaf", "no oven spring", "a sour smell", "a pale crust", "big holes at the top"],
        advice=["Try a longer bulk ferment, maybe 6 hours at room temperature.",
                "Feed the starter twice a day for a week before you bake with it.",
                "Preheat the dutch oven for a full 45 minutes.",
                "Use a bit less water, around 70% hydration is easier to handle.",
                "Do a cold retard in the fridge overnight, it changes everything.",
                "Score deeper and at a shallow angle.",
                "Weigh everything, cups are way too imprecise for this.",
                "Whole wheat flour in the starter makes it much more active."]),
    "bikes": dict(
        things=["derailleur", "chain", "brake pads", "cassette", "tubeless setup", "bottom bracket", "headset"],
        problems=["a clicking noise", "skipping gears", "squealing brakes", "a slow leak", "a creak when climbing"],
        advice=["Check the hanger alignment first, it is bent more often than you think.",
                "Clean and lube the chain, then re-index the shifting a quarter turn at a time.",
                "Sand the pads lightly and clean the rotor with alcohol.",
                "Add more sealant, 60 ml per tire is a good start.",
                "Grease the threads and torque it to spec.",
                "Replace the chain before it wears the cassette too.",
                "Take it to a shop once, watch what they do, then do it yourself."]),
    "homelab": dict(
        things=["router", "NAS", "switch", "mesh network", "Raspberry Pi", "VLAN", "DNS server", "firewall"],
        problems=["random disconnects", "slow transfers", "DNS timeouts", "the fan running all the time",
                  "devices not getting an address"],
        advice=["Put the IoT stuff on its own VLAN and firewall it off.",
                "Check the cable first, half of my problems were a bad patch cable.",
                "Set a static lease instead of a static address on the device.",
                "Update the firmware, the old one had a memory leak.",
                "Run the DNS resolver on the Pi and point DHCP at it.",
                "Turn off band steering, some clients hate it.",
                "Log everything to syslog for a day and look at the timestamps."]),
    "gardening": dict(
        things=["tomatoes", "raised bed", "compost", "seedlings", "basil", "peppers", "mulch", "drip line"],
        problems=["yellow leaves", "blossom end rot", "leggy seedlings", "aphids everywhere", "split fruit"],
        advice=["Water deeply and less often, the roots will go down.",
                "Add calcium, crushed eggshells are too slow though.",
                "Put the lights much closer to the seedlings.",
                "A strong spray of water knocks the aphids off, repeat for a few days.",
                "Mulch keeps the moisture even, which stops the splitting.",
                "Rotate where you plant them every year.",
                "Harden them off for a week before planting out."]),
    "boardgames": dict(
        things=["expansion", "rulebook", "solo mode", "campaign", "card draft", "worker placement game"],
        problems=["analysis paralysis", "a runaway leader", "too much downtime", "confusing setup"],
        advice=["Play with a timer for each turn, it helps a lot.",
                "Teach the win condition first and the details later.",
                "Use the variant from the back of the rulebook.",
                "Sleeve the cards if you play it a lot.",
                "Two players is the sweet spot for that one.",
                "Watch a playthrough video before the first game night."]),
}

QUESTION_FRAMES = [
    "How do you usually deal with {problem} on your {thing}?",
    "My {thing} has {problem} again. Any idea why? I already tried everything in the FAQ.",
    "Has anyone tried a different {thing}? I'm on attempt number {n} and still getting {problem}.",
    "Beginner question: what's the first thing you check when you see {problem}?",
    "Is it normal to get {problem} after {n} days? Asking before I throw the {thing} away.",
    "Quick poll: how often do you replace your {thing}?",
]
ANSWER_FRAMES = [
    "I had the same issue with my {thing}. {advice}",
    "{advice} Worked for me after {n} tries.",
    "Honestly it depends on the {thing}. {advice}",
    "{advice}",
    "Two things. {advice} Also, {advice2_lower}",
    "From experience: {advice} If that doesn't help, post a photo of the {thing}.",
    "That sounds like {problem}. {advice}",
]
FOLLOW_FRAMES = [
    "Tried that and it helped a bit, but I still get {problem}.",
    "Good point about the {thing}. I never thought of that.",
    "That's what I was going to say. {advice}",
    "Not sure I agree, my {thing} was fine without that.",
    "Update: day {n}, the {thing} looks much better now.",
    "Does that also work with a cheaper {thing}?",
]
# Every longer message gets independent extra parts (an opener, a personal detail with its own
# slots, a closer) so that two ordinary messages share well under half of their 3-word
# shingles: templated speech must not look like near-duplicates to MinHash.
OPENERS = ["Honestly,", "Hmm,", "Not an expert, but", "In my experience,", "Ok so", "Late reply, but", "FWIW,",
           "As someone who has done this for years,", "Funny you ask,", "Short version:", "Well,", "So basically,",
           "I might be wrong, but", "From what I remember,", "Oh man,", "Good question.", "Yeah,", "Tbh"]
DETAILS = [
    "For context, I've been at this for {n} {unit} now.",
    "I'm in {city}, so it's {weather} most of the year.",
    "My setup is pretty basic, nothing fancy, maybe {n} years old.",
    "This is attempt number {n} this {period}, so I'm getting a bit desperate.",
    "My {relative} got me into it last {season}.",
    "I changed one thing at a time and kept notes for {n} {unit}.",
    "I read the wiki twice and watched {n} videos before asking here.",
    "It started after I moved everything to the {room}.",
    "Same thing happened to a friend of mine in {city} last {season}.",
    "Paid about {price} for mine, so I'd rather not replace it yet.",
    "We had {weather} weather for {n} {unit} straight, which probably matters.",
    "My {relative} swears by the opposite approach, for what it's worth.",
    "I only get to it on {day}s, so progress is slow.",
    "The shop in {city} told me something completely different.",
    "Been lurking here for {n} {unit} and this is my first post.",
    "No idea if it matters, but everything lives in the {room}.",
]
CLOSERS = ["Good luck!", "Hope that helps.", "Let us know how it goes.", "YMMV.", "Just my two cents.",
           "Post an update!", "Cheers.", "Anyway, that's what worked for me.", "Curious what others think.",
           "Don't give up on it.", "Happy to share more details.", "Thanks in advance!", "Fingers crossed.",
           "Keep us posted.", "Have fun with it!"]
SLOTS = dict(
    unit=["days", "weeks", "months"], period=["week", "month", "season", "year"],
    city=["Lyon", "Leeds", "Porto", "Tucson", "Gdansk", "Halifax", "Osaka", "Ghent", "Boise", "Adelaide",
          "Tampere", "Bilbao", "Winnipeg", "Graz", "Nantes", "Savannah", "Bergen", "Cork"],
    weather=["humid", "freezing", "dry", "rainy", "windy", "hot", "foggy", "mild"],
    relative=["sister", "neighbour", "uncle", "roommate", "coworker", "grandmother", "partner", "cousin"],
    season=["spring", "summer", "autumn", "winter"],
    room=["garage", "basement", "kitchen", "attic", "spare room", "shed", "hallway", "balcony"],
    day=["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
)

SHORT = ["thanks", "lol", "+1", "this", "same here", "agreed", "thank you!", "nice", "haha", "yep", "good point",
         "ok", "wow", "ty", "same", "lmao", "interesting"]

SPAM = ("\U0001f6a8 FREE GIVEAWAY \U0001f6a8 Our team is celebrating one million members and is giving away "
        "5000 premium accounts to the first people who sign up at totally-legit-prizes dot example and "
        "confirm their details. Act now, this offer expires tonight and will never come back!")
COPYPASTA = ("I'd just like to interject for a moment. What you're referring to as a {thing} is in fact a "
             "system of many small parts working together, and calling it just a {thing} ignores the hours "
             "of tuning, reading and trial and error that go into getting it right. Many people use it every "
             "day without realising how much of it depends on the details nobody writes down.")


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return digits + str((10 - total % 10) % 10)


def iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    check = 98 - num % 97
    return f"{country}{check:02d}{bban}"


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


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


@dataclass
class Msg:
    author: Person
    text: str
    parent: int | None  # index of the message replied to in the same thread
    t: float  # UTC epoch seconds
    pii: list[tuple[str, str]] = field(default_factory=list)
    addressed: Person | None = None
    short: bool = False


class Talk:
    """Templated but varied conversation text, with mentions and planted PII."""

    def __init__(self, rng: random.Random, mention_style: str, pii_rate: float = 0.05):
        self.rng = rng
        self.style = mention_style
        self.pii_rate = pii_rate

    def fill(self, frame: str, topic: dict) -> str:
        """``frame`` filled in, plus an optional opener, a personal detail and an optional closer."""
        r = self.rng
        adv = r.sample(topic["advice"], 2)
        core = frame.format(thing=r.choice(topic["things"]), problem=r.choice(topic["problems"]),
                            n=r.randrange(2, 15), advice=adv[0], advice2_lower=adv[1][0].lower() + adv[1][1:])
        parts = []
        if r.random() < 0.5:
            parts.append(r.choice(OPENERS) + " " + core[0].lower() + core[1:])
        else:
            parts.append(core)
        for frame in r.sample(DETAILS, 2 if r.random() < 0.75 else 1):
            detail = frame.format(n=r.randrange(2, 30), price=f"{r.choice('$€£')}{r.randrange(15, 400)}",
                                  **{k: r.choice(v) for k, v in SLOTS.items()})
            parts.insert(r.randrange(0, len(parts) + 1), detail)
        if r.random() < 0.5:
            parts.append(r.choice(CLOSERS))
        return " ".join(parts)

    def mention(self, p: Person) -> tuple[str, str]:
        """How this platform writes a mention of ``p`` (text, planted value)."""
        r = self.rng
        if self.style == "reddit":
            m = r.choice([f"u/{p.handle}", f"/u/{p.handle}"])
            return m, m
        if self.style == "slack":
            return f"<@{p.native_id}>", f"<@{p.native_id}>"
        if self.style == "irc":
            return f"{p.handle}", p.handle
        if self.style == "telegram":
            # Exports carry no usernames: a mention of a member is a `mention_name` entity showing the
            # display name (with the user id), see _tg_entities.
            return f"@@{p.native_id}", p.display
        # Stack Exchange replies are `@DisplayNameWithoutSpaces`; Discourse and Discord use the username.
        name = p.display.replace(" ", "") if self.style == "stackexchange" else p.handle
        return f"@{name}", f"@{name}"

    def known_names(self, p: Person) -> list[str]:
        """The names of ``p`` this platform's dump shows, so a reader (and the anonymiser) knows them."""
        if self.style in ("reddit", "irc"):
            return [p.handle]
        if self.style in ("stackexchange", "telegram"):
            return [p.display]
        return [p.display, p.handle]

    def pii_sentence(self, author: Person) -> tuple[str, list[tuple[str, str]]]:
        r = self.rng
        first, last = (author.display.split(" ") + ["x"])[:2]
        kind = r.choice(["EMAIL", "PHONE", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL", "URL"])
        if kind == "EMAIL":
            v = f"{first.lower()}.{last.lower()}{r.randrange(1, 99)}@{r.choice(['example.com', 'example.org', 'mail.example.net'])}"
            s = r.choice([f"Email me at {v} if you want the details.", f"You can reach me on {v}",
                          f"send it to {v} and I'll have a look"])
        elif kind == "PHONE":
            v = r.choice([f"+1 415-555-{r.randrange(100, 199):04d}", f"(212) 555-{r.randrange(100, 199):04d}",
                          f"+44 20 7946 {r.randrange(0, 999):04d}", f"020 7946 {r.randrange(0, 999):04d}",
                          f"+61 2 5550 {r.randrange(0, 9999):04d}", f"555-{r.randrange(100, 199):04d}"])
            s = r.choice([f"Call me at {v} after six.", f"my number is {v}, text first",
                          f"Phone: {v} (evenings only)"])
        elif kind == "IP":
            v = r.choice([f"203.0.113.{r.randrange(1, 254)}", f"198.51.100.{r.randrange(1, 254)}",
                          f"192.168.{r.randrange(0, 9)}.{r.randrange(2, 254)}"])
            s = r.choice([f"My server is at {v}, port 8080.", f"the box answers on {v} but not by name",
                          f"Try pinging {v} from inside the network."])
        elif kind == "CREDIT_CARD":
            raw = luhn_complete(r.choice(["4", "51", "55"]), 16, r)
            sep = r.choice([" ", "-", ""])
            v = sep.join(raw[i:i + 4] for i in range(0, 16, 4))
            s = r.choice([f"oops I pasted my card {v} by mistake, please ignore",
                          f"Charged to {v}, still waiting for the refund."])
        elif kind == "IBAN":
            if r.random() < 0.5:
                v = iban("DE", "".join(r.choice(string.digits) for _ in range(18)))
            else:
                v = iban("GB", "NWBK" + "".join(r.choice(string.digits) for _ in range(14)))
            s = r.choice([f"For the group order transfer to {v} please.", f"IBAN is {v}, reference 'flour'."])
        else:
            site = r.choice(["reddit", "github"])
            h = author.handle.replace(" ", "").replace(".", "")
            v = f"https://reddit.com/user/{h}" if site == "reddit" else f"https://github.com/{h}"
            s = r.choice([f"More photos on my profile: {v}", f"I put the config on {v}"])
        return s, [(kind, v)]

    def text(self, topic: dict, author: Person, parent: Msg | None, earlier: list[Msg],
             allow_pii: bool = True) -> Msg:
        r = self.rng
        pii: list[tuple[str, str]] = []
        addressed = None
        if parent is None:
            body = self.fill(r.choice(QUESTION_FRAMES), topic)
        elif r.random() < 0.18:
            return Msg(author, r.choice(SHORT), None, 0.0, short=True)
        else:
            body = self.fill(r.choice(ANSWER_FRAMES if r.random() < 0.6 else FOLLOW_FRAMES), topic)
            others = [m.author for m in earlier if m.author is not author and m.author.kind == "user"]
            if parent.author is not author and parent.author.kind == "user" and r.random() < 0.3:
                m, v = self.mention(parent.author)
                addressed = parent.author
                if self.style == "irc":
                    body = f"{m}: {body}"
                    pii.append(("MENTION", v))
                else:
                    body = f"{m} {body}" if r.random() < 0.6 else f"{body} (cc {m})"
                    pii.append(("MENTION", v, "@" + parent.author.handle) if self.style == "slack" else ("MENTION", v))
            elif others and r.random() < 0.12:
                o = r.choice(others)
                name = r.choice(self.known_names(o))
                body = f"As {name} said earlier, {body[0].lower()}{body[1:]}"
                pii.append(("NAME", name))
        if allow_pii and r.random() < self.pii_rate:
            s, items = self.pii_sentence(author)
            body = f"{body} {s}"
            pii.extend(items)
        return Msg(author, body, None, 0.0, pii=pii, addressed=addressed)

    def thread(self, topic_name: str, people: list[Person], n: int, start: float, mean_gap: float,
               tree: bool = True, allow_pii: bool = True) -> list[Msg]:
        """``n`` messages: an opener, then replies (to a random earlier message if ``tree``)."""
        r = self.rng
        topic = TOPICS[topic_name]
        msgs: list[Msg] = []
        t = start
        for i in range(n):
            author = r.choice(people)
            if i > 0 and msgs[-1].author is author and len(people) > 1:
                author = r.choice([p for p in people if p is not author])
            parent_idx = None
            if i > 0:
                parent_idx = (max(0, i - 1 - int(r.expovariate(0.5))) if tree else i - 1)
            m = self.text(topic, author, msgs[parent_idx] if parent_idx is not None else None, msgs, allow_pii)
            m.parent = parent_idx if (tree or m.addressed) else None
            m.t = t
            msgs.append(m)
            t += r.expovariate(1.0 / mean_gap) + 1
        return sample_signal.plant_thread(self.style, msgs)  # a no-op unless `--signal`


def lightly_edit(rng: random.Random, text: str) -> str:
    """A near-duplicate: a couple of words changed, the rest identical."""
    words = text.split(" ")
    for _ in range(2):
        i = rng.randrange(len(words))
        words[i] = rng.choice(["really", "quite", "very", "honestly", "just", "also"])
    return " ".join(words)


def long_text(rng: random.Random, topic_name: str) -> str:
    """A long, specific answer (five or six advice sentences): long enough for near-dup detection."""
    advice = rng.sample(TOPICS[topic_name]["advice"], 5)
    return f"Long answer, because this comes up every week. {' '.join(advice)} That's everything I learned the hard way."


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


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _json(obj, indent=None, ascii=True, sort=False, seps=None) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=ascii, sort_keys=sort, separators=seps)


def zstd_long(data: bytes) -> bytes:
    """One zstd frame like a Pushshift dump: content size unknown, 2 GiB window declared, checksum."""
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG,
                                                            write_checksum=True, write_content_size=False)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return cobj.compress(data) + cobj.flush()


# ---------------------------------------------------------------------------------------
# Reddit: Pushshift / Arctic Shift monthly dumps
# ---------------------------------------------------------------------------------------

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


def hash_int(s: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    h = 0
    for ch in s.encode("utf-8"):
        h = (h * 131 + ch) % (1 << 61)
    return h


def cid_int(cid: str) -> int:
    return int(cid, 36)


# ---------------------------------------------------------------------------------------
# Stack Exchange: a site dump folder (Posts.xml, Comments.xml, Users.xml)
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Discourse: topic pages from the JSON API (/t/<id>/posts.json, …?post_number=N)
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Diplomacy: "It Takes Two to Lie" JSONL, one dialog per line, parallel arrays
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Discord: DiscordChatExporter JSON, one file per channel or thread
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Slack: a workspace export folder (and a .zip of a second workspace)
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Telegram: Telegram Desktop "Export chat history" result.json (new and 2020 formats)
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# IRC: irclogs-style day files, <network>/YYYY/MM/DD/#channel.txt
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# The corpus configuration and the entry point
# ---------------------------------------------------------------------------------------

WRITERS = {
    "reddit": write_reddit, "stackexchange": write_stackexchange, "discourse": write_discourse,
    "diplomacy": write_diplomacy, "discord": write_discord, "slack": write_slack, "telegram": write_telegram,
    "irc": write_irc,
}

CORPUS_TOML = f'''# The demo corpus written by `socialcorpus sample`: every format, read in place.
# Paths are relative to this file. Build it with `socialcorpus build --config corpus.toml`.
out = "out"
engine = "polars"

[[sources]]
format = "reddit"
# landing/reddit/ is watched by the Dagster landing sensor (see [schedule]); drop new months there.
paths = ["reddit/*.zst", "landing/reddit/*.zst"]

[[sources]]
format = "stackexchange"
paths = ["stackexchange/{SE_SITE}"]

[[sources]]
format = "discourse"
paths = ["discourse/*/*.json"]

[[sources]]
format = "diplomacy"
paths = ["diplomacy/train.jsonl"]

[[sources]]
format = "discord"
paths = ["discord/*.json"]

[[sources]]
format = "slack"
paths = ["slack/makerspace", "slack/*.zip"]

[[sources]]
format = "telegram"
paths = ["telegram/result.json", "telegram/*/result.json"]

[[sources]]
format = "irc"
paths = ["irc/*/*/*/*/*.txt"]

[anonymize]
# DEMO-ONLY fixed secret so the demo's pseudonyms are reproducible. Never use it for real
# data: set SOCIALCORPUS_SECRET (or the Dagster `pseudonym_secret` resource) instead.
demo_secret = "{DEMO_SECRET}"

[tokenizer]
vocab_size = 4000

[schedule]
# The folder the Dagster landing sensor watches for new dump files.
landing = "landing"
'''


def write_sample(out: str, seed: int = 0, scale: int = 1, signal: bool = False) -> dict:
    """Write the synthetic demo corpus under ``out``; return a summary.

    Writes ``out/<format>/…`` in each format's real layout, ``out/corpus.toml`` (the demo
    corpus configuration, paths relative to it, tables under ``out/out``) and
    ``out/planted.json`` (planted PII, author names, broken records with their quarantine
    reason, near-duplicate clusters, record duplicates). ``scale`` multiplies threads and
    messages roughly linearly (scale 1: a few thousand messages).

    ``signal``: plant the per-user habits of :mod:`pipelines.sample.signal` (listed in
    ``planted.json`` under ``signal``).

    Guarantees: the same ``seed``, ``scale`` and ``signal`` give byte-identical files; every planted
    broken record is listed with the reason code a reader must quarantine it under.
    Returns ``{"out", "seed", "scale", "files": {format: n}, "records": {format: n},
    "records_total", "broken", "pii", "near_duplicate_clusters", "record_duplicates"}``.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    os.makedirs(out, exist_ok=True)
    planted = Planted(out)
    with sample_signal.planting(seed, signal) as planter:
        for fmt, writer in WRITERS.items():
            # One generator per format, seeded by (seed, format): formats do not shift each other.
            writer(out, random.Random(f"socialcorpus-sample:{seed}:{fmt}"), scale, planted)
    with open(os.path.join(out, "corpus.toml"), "w", encoding="utf-8") as f:
        f.write(CORPUS_TOML)
    with open(os.path.join(out, "planted.json"), "w", encoding="utf-8") as f:
        json.dump({**planted.as_json(), **({"signal": planter.as_json()} if planter else {})}, f, indent=1,
                  sort_keys=True, ensure_ascii=False)
        f.write("\n")
    return {
        "out": out, "seed": seed, "scale": scale,
        "files": dict(planted.files), "records": dict(planted.records),
        "records_total": sum(planted.records.values()), "broken": len(planted.broken), "pii": len(planted.pii),
        "near_duplicate_clusters": len(planted.near_duplicates), "record_duplicates": len(planted.record_duplicates),
        **({"signal": dict(planter.counts)} if planter else {}),
    }
