"""Conversation text for the sample writers: topics, message templates, mentions in each
platform's style, planted PII (valid card numbers and IBANs) and the material planted
near-duplicates are made of.

:class:`Talk` draws every word from the writer's own ``random.Random``; a thread goes through
:mod:`pipelines.sample.signal` on its way out (a no-op unless ``--signal``).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

from pipelines.sample import signal as sample_signal
from pipelines.sample.common import Person


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


# ---------------------------------------------------------------------------------------
# Planted PII: card numbers that pass Luhn, IBANs with valid check digits
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# Messages and threads
# ---------------------------------------------------------------------------------------

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
