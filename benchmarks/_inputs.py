"""Benchmark inputs generated from the real samples (read in place, never copied)."""

from __future__ import annotations

import os
import tempfile
from collections import deque
from pathlib import Path

import polars as pl

from pipelines.core import storage
from pipelines.stages.dedup import dedup_records
from pipelines.stages.ingest import ingest

REAL = Path(os.environ.get("SOCIALCORPUS_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


def real_sources(real: Path = REAL) -> list[dict]:
    """One `[[sources]]` entry per format, pointing at the real samples in place (tests use it too)."""
    r = str(real)
    return [
        {"format": "reddit", "paths": [f"{r}/reddit/*.zst", f"{r}/reddit/*.ndjson"]},
        {"format": "stackexchange", "paths": [f"{r}/stackexchange"]},
        {"format": "discourse", "paths": [f"{r}/discourse/*.json"]},
        {"format": "diplomacy", "paths": [f"{r}/diplomacy/train.jsonl"]},
        {"format": "discord", "paths": [f"{r}/discord/dce-frontend-example-guild/*.json"]},
        {"format": "slack", "paths": [f"{r}/slack/slack-export-viewer_testarchive"]},
        {"format": "telegram", "paths": [f"{r}/telegram/*.json"]},
        {"format": "irc", "paths": [f"{r}/irc/ubuntu/*/*/*/*.txt"]},
    ]


def real_messages() -> pl.DataFrame:
    """Reddit, IRC and Discord sample messages after record dedup."""
    with tempfile.TemporaryDirectory() as d:
        for fmt, pat in {"reddit": "reddit/*.zst", "irc": "irc/ubuntu/*/*/*/*.txt",
                         "discord": "discord/dce-frontend-example-guild/*.json"}.items():
            ingest(fmt, [str(REAL / pat)], f"{d}/raw/{fmt}", f"{d}/q/{fmt}")
        return dedup_records(storage.read(f"{d}/raw"))[0]


# --- a large Reddit dump in the real Pushshift layout -----------------------------------------

BAD_EVERY = 10_000  # one broken line per this many, so the benchmark pays for the quarantine path too


def write_reddit_dump(path: str, messages: int, seed: int = 0, *, markov: bool = False) -> int:
    """Write ``messages`` Reddit comment lines to ``path`` as one long-window `.zst` frame.

    The lines replay the real RC_2005-12 sample (its field order, lengths and text) with new
    ids, threads and times, so the reader sees what a Pushshift month holds; every
    ``BAD_EVERY``-th line is cut in half (an ``invalid_json`` quarantine row). Streamed: memory
    does not grow with ``messages``. Returns the number of lines written.

    ``markov=True`` makes a corpus for whole-build benchmarks instead of a reader test: new
    authors (a skewed pool of about one per 20 comments, names made from the real ones), reply
    trees (each reply answers a random earlier comment of its thread), and each body a fresh
    word-level Markov walk over the real bodies with the real body's length, so texts are as
    unique as real ones are; then every ``DUP_EVERY``-th comment is a near-copy of a recent one
    (one word changed) and every ``PII_EVERY``-th carries a planted e-mail address or phone
    number. Without it the 1,075 real texts repeat, and at a million lines almost everything
    would be a near-duplicate of something, which no real month is.
    """
    import random

    import orjson
    import zstandard

    from pipelines.sample import ZSTD_LEVEL, ZSTD_WINDOW_LOG, b36

    with open(REAL / "reddit" / "RC_2005-12.zst", "rb") as f:
        data = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read()
    templates = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    rng = random.Random(seed)
    if markov:
        chain, starts = _markov_chain([t["body"] for t in templates])
        handles = sorted({t["author"] for t in templates if t["author"] != "[deleted]"})
        n_authors = max(1, messages // 20)
    params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG,
                                                            write_checksum=True, write_content_size=False)
    t0 = 1_134_000_000 + seed
    recent: deque[str] = deque(maxlen=1_000)  # the bodies near-copies are made of
    with open(path, "wb") as out, zstandard.ZstdCompressor(compression_params=params).stream_writer(out) as w:
        buf = []
        for i in range(messages):
            c = dict(templates[(i * 7919) % len(templates)])
            thread = i // 25
            parent = f"t3_{b36(thread)}" if i % 25 == 0 else f"t1_{b36(10_000 + i - 1)}"
            if markov:
                if i % 25:
                    parent = f"t1_{b36(10_000 + thread * 25 + rng.randrange(i % 25))}"
                if c["author"] != "[deleted]":
                    k = int(n_authors * rng.random() ** 2)  # a few prolific authors, a long tail
                    c["author"] = f"{handles[k % len(handles)]}_{b36(k)}"
                c["body"] = _comment_body(i, c["body"], chain, starts, recent, rng)
            c.update(id=b36(10_000 + i), link_id=f"t3_{b36(thread)}", parent_id=parent, created_utc=t0 + i // 4)
            line = orjson.dumps(c)
            if i % BAD_EVERY == BAD_EVERY - 1:
                line = line[: len(line) // 2]
            buf.append(line)
            if len(buf) >= 10_000:
                w.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            w.write(b"\n".join(buf) + b"\n")
    return messages


DUP_EVERY, PII_EVERY = 50, 40  # with markov=True: 2% near-copies, 2.5% planted PII


def _markov_chain(bodies: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Order-1 word chain of ``bodies``: successors of each word (with repeats, so a uniform draw
    follows the real frequencies) and the words that start a body."""
    chain: dict[str, list[str]] = {}
    starts = []
    for body in bodies:
        words = body.split()
        if not words or body in ("[deleted]", "[removed]"):
            continue
        starts.append(words[0])
        for a, b in zip(words, words[1:]):
            chain.setdefault(a, []).append(b)
    return chain, starts


def _comment_body(i: int, real: str, chain, starts, recent: deque, rng) -> str:
    from pipelines.sample import b36

    if real in ("[deleted]", "[removed]"):
        return real
    if i % DUP_EVERY == DUP_EVERY - 1 and recent:
        words = rng.choice(recent).split()
        j = rng.randrange(len(words))
        return " ".join(words[:j] + [words[j] + "s"] + words[j + 1:])  # a near-copy: one word changed
    n = max(1, len(real.split()))
    word = rng.choice(starts)
    out = [word]
    for _ in range(n - 1):
        nxt = chain.get(word)
        word = rng.choice(nxt) if nxt else rng.choice(starts)
        out.append(word)
    body = " ".join(out)
    if i % PII_EVERY == PII_EVERY - 2:
        body += (f" mail me at {b36(i)}.inbox@example.org" if i % 80 < 40
                 else f" call me on +1 415 555 {i % 10_000:04d}")
    if len(out) >= 8:
        recent.append(body)
    return body
