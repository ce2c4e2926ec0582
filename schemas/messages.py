"""The unified message table and the quarantine table (what every reader produces)."""

import pyarrow as pa

from schemas.core import Column, Table

TS = pa.timestamp("us", tz="UTC")

PLATFORMS = ("reddit", "stackexchange", "discourse", "diplomacy", "discord", "slack", "telegram", "irc")
AUTHOR_KINDS = ("user", "deleted", "bot", "system")
# Platforms whose authors are public game roles (Diplomacy powers), not people: their names
# are game vocabulary ("England"), so they are neither mentions nor leaks.
ROLE_PLATFORMS = ("diplomacy",)
TIME_KINDS = ("wall", "ordinal")
TIME_PRECISIONS = ("microsecond", "millisecond", "second", "minute", "ordinal")
MESSAGE_KINDS = ("post", "comment", "message", "action")

MESSAGES = Table(
    "messages_raw",
    1,
    "One row per message as read from a dump (the unified message schema). `messages_raw` may "
    "hold several copies of one `message_id` (re-crawls, overlapping exports); `messages` holds one.",
    [
        Column("message_id", pa.string(), False,
               "Globally unique id: `<platform>:<scope>:<native id>`, e.g. `reddit:t1_c2a`, "
               "`discord:<message snowflake>`, `irc:<network>/<channel>:<date>:<line>`. From `messages_anon` on, "
               "the scope of a conversation whose id names a person (a Telegram personal or bot chat, whose id is "
               "the peer's user id; a Slack DM; an IRC query log named after a nick) is keyed-hashed, e.g. "
               "`telegram:p<16 hex>:<n>`, here and in every id column, consistently."),
        Column("platform", pa.string(), False, f"One of {', '.join(PLATFORMS)}."),
        Column("community", pa.string(), False,
               "Subreddit, Stack Exchange site, Discourse forum host, Diplomacy game, Discord guild/channel, "
               "Slack workspace/channel, Telegram chat, IRC network/channel. Private scopes keyed-hashed from "
               "`messages_anon` on (see `message_id`)."),
        Column("thread_id", pa.string(), False,
               "The conversation the message belongs to (submission, question, topic, dialog, channel or "
               "chat thread), globally unique, prefixed like `message_id` (and hashed like it)."),
        Column("parent_id", pa.string(), True,
               "`message_id` of the message this one explicitly replies to (may point outside the corpus; "
               "hashed like `message_id`)."),
        Column("parent_inferred", pa.string(), True,
               "`message_id` of a message this one addresses by name (`nick: …`, `@name`), "
               "resolved to that author's latest earlier message in the thread."),
        Column("author_id", pa.string(), True,
               "Native author id, unique within the platform (raw; pseudonymised in `messages_anon`). "
               "Null for deleted or unknown authors."),
        Column("author_name", pa.string(), True,
               "Display name or handle as shown in the source (raw; used to find mentions, "
               "replaced by the pseudonym in `messages_anon`)."),
        Column("author_aliases", pa.list_(pa.string()), True,
               "Other names the source shows for the author (real name, nickname), raw; used only "
               "to find mentions of the person in text; null in `messages_anon`."),
        Column("author_kind", pa.string(), False, f"One of {', '.join(AUTHOR_KINDS)}."),
        Column("recipient_ids", pa.list_(pa.string()), True,
               "Native ids of explicit recipients (Diplomacy receiver, direct-message partner)."),
        Column("created_at", TS, True,
               "When the message was written, UTC, microseconds. Null when the source has only ordinal time."),
        Column("time_ordinal", pa.int64(), True,
               "Position on an ordinal-only clock (Diplomacy `absolute_message_index` within its game)."),
        Column("time_kind", pa.string(), False, "`wall` (a real clock) or `ordinal` (only an order)."),
        Column("time_precision", pa.string(), False, f"One of {', '.join(TIME_PRECISIONS)}."),
        Column("order_in_source", pa.int64(), False,
               "Position of the record in its source file (tie-break among equal times)."),
        Column("kind", pa.string(), False, f"One of {', '.join(MESSAGE_KINDS)}."),
        Column("title", pa.string(), True, "Title of a submission, question or topic opener."),
        Column("text", pa.string(), False,
               "Plain text: HTML rendered, entities unescaped, newlines normalised to `\\n`."),
        Column("score", pa.int64(), True, "Votes or reactions where the source has them."),
        Column("edited_at", TS, True, "Last edit (or update) time of this copy, UTC."),
        Column("retrieved_at", TS, True, "When this copy was crawled or exported, UTC."),
        Column("revision", pa.int64(), True, "Source revision counter (Discourse `version`)."),
        Column("labels", pa.string(), True,
               "JSON object of annotations (Diplomacy `sender_truthful`, `receiver_truthful`; "
               "`NOANNOTATION` becomes null)."),
        Column("extra", pa.string(), True, "JSON object of source-specific leftovers worth keeping."),
        Column("source_uri", pa.string(), False,
               "The file (fsspec URL or path) the record came from. From `messages_anon` on: `src:` + 16 hex "
               "of HMAC-SHA256(secret, `source_uri` U+001F uri), since file names can name people (DM exports); "
               "`pipelines.stages.anonymize.source_key` maps a raw path to it."),
        Column("source_record", pa.int64(), False,
               "Record number within the file (line, element or array index, 0-based)."),
    ],
)

QUARANTINE_REASONS = {
    "invalid_json": "a line or file is not valid JSON",
    "invalid_utf8": "bytes that do not decode as UTF-8",
    "invalid_xml": "an XML element that does not parse",
    "truncated": "a compressed stream or file ends in the middle of a record",
    "corrupt": "compressed data that fails to decode",
    "wrong_type": "a field has a type the format does not allow",
    "missing_field": "a required field is absent or null",
    "bad_time": "a timestamp that cannot be read or is out of range",
    "too_large": "a record over the size cap",
    "empty_file": "a file with no records at all",
    "unparsable_line": "a log line that matches no known line form",
    "bad_value": "a field whose value the reader cannot convert (out of range, unexpected structure)",
}

QUARANTINE = Table(
    "quarantine",
    1,
    "Input records set aside with a reason, never silently dropped. Holds raw excerpts: "
    "same access tier as `messages_raw`.",
    [
        Column("format", pa.string(), False, "Reader that set the record aside."),
        Column("source_uri", pa.string(), False, "File the record came from."),
        Column("source_record", pa.int64(), True, "Record number within the file (0-based), if known."),
        Column("byte_offset", pa.int64(), True, "Byte offset in the (decompressed) file, if known."),
        Column("reason", pa.string(), False,
               "Reason code: " + ", ".join(f"`{k}` ({v})" for k, v in QUARANTINE_REASONS.items()) + "."),
        Column("detail", pa.string(), False, "What exactly was wrong, for a human."),
        Column("excerpt", pa.string(), True, "The first 200 characters of the record."),
    ],
)
