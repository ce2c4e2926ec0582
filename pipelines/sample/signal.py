"""Planted signal for `socialcorpus sample --signal`: habits only the history streams can explain.

The usual demo corpus has no per-user regularity a model could learn from the history
streams, so an ablation on it cannot show that the streams carry anything. With
``--signal`` every thread generated through :class:`pipelines.sample.talk.Talk` (all formats but
Diplomacy) gets two habits, each drawn from a small set of made-up words no template uses:

* **own habit** (``signoff``, one of ``N_SIGNOFFS`` words per user): every message of a user
  ends with ``~<signoff>``. In the user's first message of a thread their earlier sign-offs
  are not in the conversation window; their own stream (earlier messages, other threads)
  holds them. Only the own stream can say which word it is.
* **interlocutor habit** (``pet``, one of ``N_PETS`` words per user): a thread is a *speak*
  or an *echo* thread (half each, by a hash of its position). In a speak thread every
  message of a user says ``<pet> as always.``. In an echo thread nobody says their own pet
  word; the first reply to each user V ends with ``<V's pet>, as you'd say.``. The word is
  then nowhere earlier in that thread, so not in the reply's window; V's earlier messages
  (the interlocutor stream of the example whose interlocutor is V) hold it. Only that
  stream can say which word it is.

The sets are small so each word is frequent (one trained token): the task is recalling
*which* word from the right stream, not learning rare words. Planting never draws from the
generators' random streams (words and thread kinds come from SHA-256), so the corpus is the
usual text plus the planted words. ``planted.json`` lists them under ``signal``
(docs/sample.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib

SIGNOFF_MARK = "~"
PET_SUFFIX = " as always"
ECHO_SUFFIX = ", as you'd say."

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "tr", "vr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "s", "x", "k")
N_SIGNOFFS = 8
N_PETS = 8


def made_up_word(key: str, used: set[str]) -> str:
    """A pronounceable three-syllable word from ``key``'s hash, distinct from ``used`` (added to it)."""
    for salt in range(1000):
        h = hashlib.sha256(f"{key}\x1f{salt}".encode()).digest()
        w = "".join(_ONSETS[h[2 * i] % len(_ONSETS)] + _VOWELS[h[2 * i + 1] % len(_VOWELS)] for i in range(3))
        w += _CODAS[h[7] % len(_CODAS)]
        if w not in used:
            used.add(w)
            return w
    raise RuntimeError(f"no unused made-up word for {key!r}")


class SignalPlanter:
    """Plants the own and interlocutor habits into threads as they are generated; counts them."""

    def __init__(self, seed: int):
        self.seed = seed
        self.words: dict[str, dict[str, dict[str, str]]] = {}   # style -> handle -> {"signoff", "pet"}
        used: set[str] = set()
        # Small sets of words, each used by many authors: frequent enough to be single tokens
        # with trained embeddings, so the model's task is to recall which one, not to learn rare words.
        self.signoffs = [made_up_word(f"{seed}:signoff:{i}", used) for i in range(N_SIGNOFFS)]
        self.pets = [made_up_word(f"{seed}:pet:{i}", used) for i in range(N_PETS)]
        self._threads: dict[str, int] = {}
        self.counts = {"threads": 0, "echo_threads": 0, "signoffs": 0, "pets": 0, "echoes": 0}

    def words_of(self, style: str, handle: str) -> dict[str, str]:
        per = self.words.setdefault(style, {})
        if handle not in per:
            h = hashlib.sha256(f"{self.seed}:{style}:{handle}".encode()).digest()
            per[handle] = {"signoff": self.signoffs[h[0] % len(self.signoffs)], "pet": self.pets[h[1] % len(self.pets)]}
        return per[handle]

    def plant_thread(self, style: str, msgs: list) -> None:
        """Rewrite ``msgs`` (a thread of :class:`pipelines.sample.talk.Msg`, in time order) in place."""
        n = self._threads.get(style, 0)
        self._threads[style] = n + 1
        echo = hashlib.sha256(f"{self.seed}:{style}:thread:{n}".encode()).digest()[0] % 2 == 1
        self.counts["threads"] += 1
        self.counts["echo_threads"] += echo
        answered = set()
        for m in msgs:
            a = m.author
            if a.kind != "user":
                continue
            w = self.words_of(style, a.handle)
            parent = msgs[m.parent].author if m.parent is not None else None
            # only the first reply to V: later ones (siblings in reply trees) would show it in the window
            if echo and parent is not None and parent.kind == "user" and parent is not a and id(parent) not in answered:
                answered.add(id(parent))
                # appended, not prefixed: IRC's "nick:" addressing must stay at the start of the line
                m.text = f"{m.text} {self.words_of(style, parent.handle)['pet']}{ECHO_SUFFIX}"
                self.counts["echoes"] += 1
            if not echo:
                m.text = f"{m.text} {w['pet']}{PET_SUFFIX}."
                self.counts["pets"] += 1
            m.text = f"{m.text} {SIGNOFF_MARK}{w['signoff']}"
            self.counts["signoffs"] += 1

    def as_json(self) -> dict:
        return {"signoffs": self.signoffs, "pets": self.pets, "words": self.words, "counts": dict(self.counts)}


_ACTIVE: contextvars.ContextVar[SignalPlanter | None] = contextvars.ContextVar("socialcorpus_signal", default=None)


@contextlib.contextmanager
def planting(seed: int, on: bool):
    """While active (``on``), :func:`plant_thread` rewrites generated threads; yields the planter or None."""
    planter = SignalPlanter(seed) if on else None
    token = _ACTIVE.set(planter)
    try:
        yield planter
    finally:
        _ACTIVE.reset(token)


def plant_thread(style: str, msgs: list) -> list:
    """The hook `Talk.thread` calls: plants the habits when a planter is active, else changes nothing."""
    planter = _ACTIVE.get()
    if planter is not None:
        planter.plant_thread(style, msgs)
    return msgs
