"""The token shard rows the pipeline writes and the trainer reads (see docs/shards.md)."""

import pyarrow as pa

from schemas.core import Column, Table

# 2: + `target_labels` (the target's annotations, so evaluation can split bits per byte by them)
SHARD_SCHEMA_VERSION = 2
# Written last by the shards stage in OUT/shards/ (docs/shards.md): the build finished, and
# these are its manifests. The trainer refuses a manifest it does not list.
BUILD_RECORD = "_BUILD_COMPLETE.json"

# Per-token / per-message role ids, relative to the example's perspective (self).
ROLE_SELF, ROLE_OTHER, ROLE_THIRD = 0, 1, 2
ROLE_NAMES = ("self", "other", "third")

TOK = pa.list_(pa.int32())
I8 = pa.list_(pa.int8())
I32 = pa.list_(pa.int32())
I64 = pa.list_(pa.int64())

SHARD = Table(
    "token_shards", SHARD_SCHEMA_VERSION,
    "One row per example: the conversation window and the two history streams as token ids.",
    [
        Column("example_id", pa.string(), False, "Same id as in `pair_examples`."),
        Column("self_id", pa.string(), False, "Pseudonym of the perspective author."),
        Column("other_id", pa.string(), False, "Pseudonym of the interlocutor."),
        Column("thread_id", pa.string(), False, "Thread of the target message."),
        Column("timeline_id", pa.string(), False, "Timeline of all referenced messages."),
        Column("target_message_id", pa.string(), False, "The message the loss is on."),
        Column("time_kind", pa.string(), False, "`wall` (times are epoch seconds) or `ordinal`."),
        Column("window_tokens", TOK, False, "Conversation window: every message rendered as "
               "`<msg> <role> [<gap>] body </msg>`, in time order, target last."),
        Column("window_roles", I8, False, "Per window token: role of the message's author (0 self, 1 other, 2 third)."),
        Column("window_loss_mask", I8, False, "Per window token: 1 on the target's body and end token, else 0."),
        Column("window_msg_offsets", I32, False, "Token offset where each window message starts, plus the total length last."),
        Column("window_msg_times", I64, False, "Per window message: epoch seconds (wall) or ordinal position."),
        Column("window_msg_bytes", I32, False, "Per window message: UTF-8 bytes of its body (for bits per byte)."),
        Column("window_msg_ids", pa.list_(pa.string()), False, "Per window message: its `message_id`."),
        Column("own_tokens", TOK, False, "Own stream (same rendering), time order."),
        Column("own_msg_offsets", I32, False, "Token offset of each own-stream message, plus the total last."),
        Column("own_msg_times", I64, False, "Per own-stream message: time as in `window_msg_times`."),
        Column("own_msg_roles", I8, False, "Per own-stream message: role of its author."),
        Column("other_tokens", TOK, False, "Interlocutor stream (same rendering), time order."),
        Column("other_msg_offsets", I32, False, "Token offset of each interlocutor-stream message, plus the total last."),
        Column("other_msg_times", I64, False, "Per interlocutor-stream message: time as in `window_msg_times`."),
        Column("other_msg_roles", I8, False, "Per interlocutor-stream message: role of its author."),
        Column("n_tokens", pa.int32(), False, "Window + own + other tokens."),
        Column("n_target_tokens", pa.int32(), False, "Tokens under the loss mask."),
        Column("target_bytes", pa.int32(), False, "UTF-8 bytes of the target body."),
        Column("weight", pa.float32(), False, "Example weight (1.0 unless a cap down-weights it)."),
        Column("target_labels", pa.string(), True, "The target's annotations, JSON, copied from `pair_examples.labels` "
               "(Diplomacy: `sender_truthful`, `receiver_truthful`); null when it has none."),
    ],
)
