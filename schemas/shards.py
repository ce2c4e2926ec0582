"""The token shard rows the pipeline writes and the trainer reads (see docs/shards.md)."""

import hashlib
import posixpath

import pyarrow as pa

from schemas.core import Column, Table

# 2: + `target_labels` (the target's annotations, so evaluation can split bits per byte by them)
SHARD_SCHEMA_VERSION = 2          # the flat layout: every example row carries its tokens
# 3: the reference layout: a token store (each message once) + example rows of references
SHARD_REF_SCHEMA_VERSION = 3
READABLE_VERSIONS = (SHARD_SCHEMA_VERSION, SHARD_REF_SCHEMA_VERSION)  # what the trainer reads
LAYOUT_OF_VERSION = {SHARD_SCHEMA_VERSION: "flat", SHARD_REF_SCHEMA_VERSION: "reference"}
# Written last by the shards stage in OUT/shards/ (docs/shards.md): the build finished, and
# these are its manifests. The trainer refuses a manifest it does not list.
BUILD_RECORD = "_BUILD_COMPLETE.json"

# Per-token / per-message role ids, relative to the example's perspective (self).
ROLE_SELF, ROLE_OTHER, ROLE_THIRD = 0, 1, 2
ROLE_NAMES = ("self", "other", "third")

# The structural tokens the shard rendering uses (pipelines/stages/tokenizer.py trains them).
PAD, MSG, END = "<pad>", "<msg>", "</msg>"
ROLE_TOKENS = tuple(f"<{r}>" for r in ROLE_NAMES)  # index = ROLE_*
MENTION = "<mention>"          # in text: a mention of a known author, before role resolution
MENTION_ROLE_TOKENS = tuple(f"<mention:{r}>" for r in ROLE_NAMES)  # mention of self/other/third
PREFIX = 3  # <msg> <role> <gap>
SUFFIX = 1  # </msg>


def resolve(manifest_url: str, path: str) -> str:
    """The URL of a file a manifest lists: ``path`` as given when absolute or a URL, else relative
    to the manifest's folder (``../store/…`` normalised, the URL's protocol kept)."""
    if "://" in path or path.startswith("/"):
        return path
    folder = manifest_url.rsplit("/", 1)[0] if "/" in manifest_url else "."
    proto, sep, rest = folder.rpartition("://")
    return f"{proto}{sep}{posixpath.normpath(posixpath.join(rest, path))}"


def store_key(sha256s) -> str:
    """One token store's identity: the hash of its files' sha256s, in manifest order."""
    return hashlib.sha256("".join(sha256s).encode()).hexdigest()

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


# -- schema version 3, the reference layout (docs/shards.md) -------------------------------------

REFS = pa.list_(pa.int64())

TOKEN_STORE = Table(
    "token_store", SHARD_REF_SCHEMA_VERSION,
    "One row per message any example of the build references, tokenised once, in (timeline_id, seq) "
    "order: its row number across the store's files (in manifest order) is the index example rows use.",
    [
        Column("message_id", pa.string(), False, "The message (`timeline.message_id`)."),
        Column("timeline_id", pa.string(), False, "Its timeline."),
        Column("seq", pa.int64(), False, "Its position on the timeline."),
        Column("author_code", pa.int32(), False, "Its author as a code of the build's pseudonym dictionary "
               "(compared with an example's `self_code`/`other_code` to give the role); -1 when unknown."),
        Column("tokens", TOK, False, "The body, tokenised once, cut to `max_message_tokens`; each mention of a "
               "known author is the one id of `<mention>` (its role is resolved per example)."),
        Column("mention_codes", I32, False, "Per `<mention>` id in `tokens`, in order: the code of the author it "
               "names (-1 unknown)."),
        Column("time", pa.int64(), False, "Epoch seconds (wall), `seq` (ordinal) or -1 (a wall message without a time)."),
        Column("ordinal", pa.bool_(), False, "True on a timeline without a clock (Diplomacy)."),
        Column("body_bytes", pa.int32(), False, "UTF-8 bytes of the body as tokenised (as `window_msg_bytes`)."),
    ],
)

SHARD_REF = Table(
    "token_examples", SHARD_REF_SCHEMA_VERSION,
    "One row per example: the window and the two history streams as references into the token store, "
    "with the gap token of each referenced message; roles and mention roles are applied when the loader "
    "assembles the streams (schemas/assembly.py).",
    [
        *(SHARD.column(c) for c in ("example_id", "self_id", "other_id", "thread_id", "timeline_id",
                                    "target_message_id", "time_kind")),
        Column("self_code", pa.int32(), False, "`self_id` as a code of the store's pseudonym dictionary."),
        Column("other_code", pa.int32(), False, "`other_id` as a code of the store's pseudonym dictionary."),
        Column("window_msgs", REFS, False, "Window messages (store rows), time order, target last, after the "
               "window budget."),
        Column("window_gaps", I32, False, "Per window message: its gap token id."),
        Column("own_msgs", REFS, False, "Own-stream messages (store rows), time order, after the stream budget."),
        Column("own_gaps", I32, False, "Per own-stream message: its gap token id."),
        Column("other_msgs", REFS, False, "Interlocutor-stream messages (store rows), time order, after the "
               "stream budget."),
        Column("other_gaps", I32, False, "Per interlocutor-stream message: its gap token id."),
        *(SHARD.column(c) for c in ("n_tokens", "n_target_tokens", "target_bytes", "weight", "target_labels")),
    ],
)
