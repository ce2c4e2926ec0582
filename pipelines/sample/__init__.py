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

Layout: one module per format, named as the reader in ``pipelines/sources/`` that reads what
it writes (``reddit.py`` writes what ``pipelines/sources/reddit.py`` reads, and so on), each
exposing ``write_<format>(root, rng, scale, planted)``; :mod:`pipelines.sample.common` holds
the people, :class:`Planted` (``planted.json``) and the time, id and file helpers;
:mod:`pipelines.sample.talk` the conversation text, planted PII and near-duplicate material;
:mod:`pipelines.sample.signal` the ``--signal`` habits. This module composes them: the writer
table, ``corpus.toml`` and :func:`write_sample`. Every public name of those modules is
re-exported here.
"""

from __future__ import annotations

import json
import os
import random

from pipelines.sample import signal as sample_signal
from pipelines.sample.common import FIRST, LAST, UTC, Person, Planted, b36, dt, hash_int, make_people
from pipelines.sample.diplomacy import DIPLO_EXTRA, DIPLO_LINES, PLACES, POWERS, write_diplomacy
from pipelines.sample.discord import DISCORD_DELETED_USER_ID, DISCORD_EPOCH_MS, write_discord
from pipelines.sample.discourse import DISCOURSE_FORUM, write_discourse
from pipelines.sample.irc import write_irc
from pipelines.sample.reddit import (REDDIT_MONTHS, SUBREDDITS, ZSTD_LEVEL, ZSTD_WINDOW_LOG, cid_int, write_reddit,
                                     zstd_long)
from pipelines.sample.slack import SLACK_TZ_OFFSET, write_slack
from pipelines.sample.stackexchange import SE_SITE, write_stackexchange
from pipelines.sample.talk import (ANSWER_FRAMES, CLOSERS, COPYPASTA, DETAILS, FOLLOW_FRAMES, OPENERS, QUESTION_FRAMES,
                                   SHORT, SLOTS, SPAM, TOPICS, Msg, Talk, iban, lightly_edit, long_text, luhn_complete,
                                   luhn_ok)
from pipelines.sample.telegram import TELEGRAM_LOCAL_OFFSET, write_telegram

__all__ = [
    # composition (this module)
    "DEMO_SECRET", "WRITERS", "CORPUS_TOML", "write_sample",
    # common
    "FIRST", "LAST", "UTC", "Person", "Planted", "b36", "dt", "hash_int", "make_people",
    # talk
    "ANSWER_FRAMES", "CLOSERS", "COPYPASTA", "DETAILS", "FOLLOW_FRAMES", "OPENERS", "QUESTION_FRAMES", "SHORT", "SLOTS",
    "SPAM", "TOPICS", "Msg", "Talk", "iban", "lightly_edit", "long_text", "luhn_complete", "luhn_ok",
    # one module per format
    "REDDIT_MONTHS", "SUBREDDITS", "ZSTD_LEVEL", "ZSTD_WINDOW_LOG", "cid_int", "write_reddit", "zstd_long",
    "SE_SITE", "write_stackexchange",
    "DISCOURSE_FORUM", "write_discourse",
    "DIPLO_EXTRA", "DIPLO_LINES", "PLACES", "POWERS", "write_diplomacy",
    "DISCORD_DELETED_USER_ID", "DISCORD_EPOCH_MS", "write_discord",
    "SLACK_TZ_OFFSET", "write_slack",
    "TELEGRAM_LOCAL_OFFSET", "write_telegram",
    "write_irc",
]

DEMO_SECRET = "socialcorpus-demo-secret-DO-NOT-USE-IN-PRODUCTION"

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
