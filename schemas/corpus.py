"""Tables after ingestion: deduplicated, anonymised, near-deduplicated, timeline, histories, examples."""

import pyarrow as pa

from schemas.core import Column, Table
from schemas.messages import MESSAGES

SEQS = pa.list_(pa.int64())
GAPS = pa.list_(pa.float64())

RECORDS = MESSAGES.extend(
    "messages", 1,
    "One row per `message_id`: the version kept by record dedup (see docs/stages/dedup.md).",
    [Column("n_copies", pa.int32(), False, "How many input copies collapsed into this row (1 = unique).")],
)

ANON = RECORDS.extend(
    "messages_anon", 1,
    "`messages` with authors pseudonymised (`author_id` = keyed pseudonym, `author_name` null), "
    "mentions replaced by pseudonym tokens and other PII by typed placeholders.",
    [Column("pii_types", pa.list_(pa.string()), False,
            "Placeholder types replaced in this message (`EMAIL`, `PHONE`, `MENTION`, …), one entry per replacement.")],
)

DEDUP = ANON.extend(
    "messages_dedup", 1,
    "`messages_anon` with near-duplicate marks. Duplicates stay in their threads as context.",
    [
        Column("is_target", pa.bool_(), False, "False for non-canonical near-duplicates: context only, never a training target."),
        Column("dup_of", pa.string(), True, "`message_id` of the canonical copy of this message's near-dup cluster."),
        Column("dup_cluster_size", pa.int32(), False, "Size of the near-dup cluster (1 = no duplicate)."),
        Column("mass_dup", pa.bool_(), False, "Cluster posted by many distinct authors (spam, copypasta)."),
    ],
)

TIMELINE = DEDUP.extend(
    "timeline", 1,
    "Every message placed on its timeline with a dense `seq`, sorted by "
    "(time, platform, thread, order in source, message id).",
    [
        Column("timeline_id", pa.string(), False,
               "`wall` for all wall-clock sources; `ordinal:<community>` for each ordinal-only game."),
        Column("seq", pa.int64(), False, "Dense 0..n-1 position on the timeline."),
        Column("parent_seq", pa.int64(), True, "`seq` of `parent_id` (or else `parent_inferred`) when it is in the corpus."),
        Column("parent_dangling", pa.bool_(), False, "The message names a parent that is not in the corpus."),
    ],
)

HISTORIES = Table(
    "reading_histories", 1,
    "For each message: what its author had read just before writing it, and the author's own "
    "previous messages, by reference to `seq` on the same timeline. Strictly causal.",
    [
        Column("timeline_id", pa.string(), False, "Timeline of the message."),
        Column("seq", pa.int64(), False, "`seq` of the message."),
        Column("message_id", pa.string(), False, "The message."),
        Column("thread_id", pa.string(), False, "Its thread."),
        Column("author_id", pa.string(), True, "Its author's pseudonym."),
        Column("structure", pa.string(), False,
               "`tree` when the message has an explicit `parent_id` on a reply-tree platform (Reddit, Stack "
               "Exchange, Discourse, Discord, Slack, Telegram); otherwise `linear` (channel order)."),
        Column("read_seqs", SEQS, False,
               "What the author had read, at most N: ancestors nearest first (each strictly earlier than the "
               "one below it), then the latest earlier siblings (same `parent_id`), latest first (tree); or the "
               "previous N messages of the thread, nearest first (linear)."),
        Column("own_seqs", SEQS, False, "The author's own previous K messages on this timeline, most recent first."),
    ],
)

EXAMPLES = Table(
    "pair_examples", 1,
    "One training example per (author, interlocutor, target message), all streams by reference.",
    [
        Column("example_id", pa.string(), False,
               "Deterministic id: hex SHA-1 of `target_message_id`, U+001F, `other_id`. Caps keep the lowest ids."),
        Column("split", pa.string(), False,
               "`train`, `validation` or `test`, by a salted hash of `thread_id` (a thread is never in two "
               "splits); see `[examples]` for the temporal and user-disjoint options."),
        Column("timeline_id", pa.string(), False, "Timeline of every referenced `seq`."),
        Column("platform", pa.string(), False, "Platform of the target."),
        Column("community", pa.string(), False, "Community of the target."),
        Column("thread_id", pa.string(), False, "Thread of the target."),
        Column("target_seq", pa.int64(), False, "`seq` of the target message."),
        Column("target_message_id", pa.string(), False, "The target message."),
        Column("self_id", pa.string(), False, "Pseudonym of the target's author (the perspective)."),
        Column("other_id", pa.string(), False, "Pseudonym of the interlocutor."),
        Column("window_seqs", SEQS, False, "Local conversation in time order, ending with the target."),
        Column("own_seqs", SEQS, False, "The author's previous messages strictly before the window, the latest K, time order."),
        Column("other_seqs", SEQS, False,
               "The interlocutor's messages the author had read before the target (in the reading histories of "
               "the author's earlier messages), strictly before the window, the latest K, time order; with "
               "`other_public`, also their public messages before the window."),
        Column("window_gaps", GAPS, True,
               "Seconds before each window message: since the previous message of the list; for the first, since "
               "the previous message of its thread (a null element when it opens the thread). The whole list is "
               "null on ordinal timelines."),
        Column("own_gaps", GAPS, True, "Seconds before each own-stream message, as for `window_gaps`."),
        Column("other_gaps", GAPS, True, "Seconds before each interlocutor-stream message, as for `window_gaps`."),
        Column("labels", pa.string(), True, "The target's annotations (Diplomacy deception labels), JSON, copied."),
    ],
)
