"""`socialcorpus show-example`: one training example decoded, as the model sees it.

Three steps, each one small function, so a change of the shard format touches only the first:

1. :func:`load_row` reads one shard row from a split's ``manifest.json`` (by index or id);
2. :func:`assemble` turns that row into an :class:`Example`: per stream the token ids, the
   per-message offsets, times and roles, and for the window the per-token roles and loss
   mask (what the trainer's loader assembles for the model);
3. :func:`render_text` / :func:`render_markdown` decode it with the tokenizer: the window
   with each message's role, gap token, time and author, the target marked and its loss
   mask shown token by token; then the author's own stream and the interlocutor's stream.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from tokenizers import Tokenizer

from pipelines.core import render, storage
from pipelines.stages import tokenizer as T
from pipelines.stages import shards as SH
from schemas import SHARD as S
from schemas import SHARD_REF as R
from schemas.shards import SHARD_REF_SCHEMA_VERSION
from schemas.shards import ROLE_NAMES, ROLE_OTHER, ROLE_SELF

WIDTH = 100
STREAMS = ("window", "own", "other")
STREAM_TITLES = {"window": "conversation window (the loss is on the target, marked >>)",
                 "own": "own stream: what the author wrote before",
                 "other": "interlocutor stream: what the interlocutor wrote before"}


@dataclass
class Stream:
    """One stream of an example: flat token ids and, per message, where it starts, when and by whom."""

    tokens: list[int]
    msg_offsets: list[int]           # start of each message, plus the total length last
    msg_times: list[int]             # epoch seconds (wall) or ordinal position
    msg_roles: list[int]             # schemas.shards.ROLE_*
    msg_ids: list[str] | None = None
    loss_mask: list[int] | None = None  # per token (window only)


@dataclass
class Example:
    """An assembled example: ids of the perspective and the interlocutor, and its three streams."""

    example_id: str
    self_id: str
    other_id: str
    thread_id: str
    time_kind: str
    target_message_id: str
    streams: dict[str, Stream]
    split: str = ""


def assemble(row: Mapping[str, Any], split: str = "") -> Example:
    """One shard row (``schemas.SHARD``, version 1, as a dict of Python lists) as an :class:`Example`.

    Per-message window roles are the role of each message's first token.
    """
    w_off = list(row[S.window_msg_offsets])
    w_roles = list(row[S.window_roles])
    window = Stream(list(row[S.window_tokens]), w_off, list(row[S.window_msg_times]),
                    [int(w_roles[o]) for o in w_off[:-1]], list(row[S.window_msg_ids]),
                    list(row[S.window_loss_mask]))
    own = Stream(list(row[S.own_tokens]), list(row[S.own_msg_offsets]), list(row[S.own_msg_times]),
                 list(row[S.own_msg_roles]))
    other = Stream(list(row[S.other_tokens]), list(row[S.other_msg_offsets]), list(row[S.other_msg_times]),
                   list(row[S.other_msg_roles]))
    return Example(row[S.example_id], row[S.self_id], row[S.other_id], row[S.thread_id], row[S.time_kind],
                   row[S.target_message_id], {"window": window, "own": own, "other": other}, split)


def _manifest(manifest_url: str) -> dict:
    return SH.read_manifest(manifest_url)


def _read(manifest_url: str, man: dict, entry: dict, **kw):
    """One shard file of the manifest as flat rows (either layout; pipelines/stages/shards.py)."""
    return SH.as_flat(SH.read_file(manifest_url, entry, **kw), manifest_url, man)


def load_row(manifest_url: str, index: int | None = None, example_id: str | None = None) -> tuple[dict, str]:
    """One row of the split ``manifest_url`` names, as a dict, and the split's name.

    ``index`` counts rows across the split's shards in manifest order; ``example_id`` finds
    that example. With neither, :func:`pick_index` chooses one.
    """
    man = _manifest(manifest_url)
    split = man.get("split", "")
    if not man["shards"]:
        raise ValueError(f"{manifest_url}: the {split} split has no rows (a small corpus can leave a split empty); "
                         f"try another split's manifest.json")
    if example_id is not None:
        for s in man["shards"]:
            t = _read(manifest_url, man, s, filters=[(S.example_id, "=", example_id)])
            if t.num_rows:
                return t.slice(0, 1).to_pylist()[0], split
        raise ValueError(f"{manifest_url}: no example with example_id {example_id!r} in the {split} split")
    if index is None:
        index = pick_index(manifest_url)
    if not 0 <= index < man["rows"]:
        raise ValueError(f"{manifest_url}: --index {index} is out of range; the {split} split has "
                         f"{man['rows']} rows (0..{man['rows'] - 1})")
    for s in man["shards"]:
        if index < s["rows"]:
            return _read(manifest_url, man, s).slice(index, 1).to_pylist()[0], split
        index -= s["rows"]
    raise ValueError(f"{manifest_url}: the shards hold fewer rows than the manifest says; "
                     f"run the manifest check (`manifest_checksums_check`)")


def pick_index(manifest_url: str, max_tokens: int = 800, min_target_tokens: int = 8) -> int:
    """A row that shows what an example holds: the first row of the split's first shard with
    at least three window messages, a non-empty own and interlocutor stream, a target of at
    least ``min_target_tokens`` and at most ``max_tokens`` in all; else the first row with
    any context; else row 0. Deterministic: the same shards give the same pick."""
    man = _manifest(manifest_url)
    if not man["shards"]:
        return 0
    if man.get("schema_version") == SHARD_REF_SCHEMA_VERSION:   # message counts from the references
        cols, extra = [R.window_msgs, R.own_msgs, R.other_msgs, R.n_tokens, R.n_target_tokens], 0
    else:                                                         # offsets: one entry more than messages
        cols, extra = [S.window_msg_offsets, S.own_msg_offsets, S.other_msg_offsets, S.n_tokens, S.n_target_tokens], 1
    t = SH.read_file(manifest_url, man["shards"][0], columns=cols).to_pydict()
    fallback = None
    for i, (w, o, v, n, nt) in enumerate(zip(*(t[c] for c in cols))):
        w, o, v = len(w) - extra, len(o) - extra, len(v) - extra
        if w >= 3 and o > 0 and v > 0 and n <= max_tokens and nt >= min_target_tokens:
            return i
        if fallback is None and w >= 2:
            fallback = i
    return fallback or 0


def default_tokenizer_url(manifest_url: str) -> str:
    """``OUT/tokenizer.json`` for ``OUT/shards/<split>/manifest.json``."""
    parts = manifest_url.rstrip("/").split("/")
    if len(parts) < 3:
        return "tokenizer.json"
    return "/".join(parts[:-3] + ["tokenizer.json"])


def load_tokenizer(url: str, manifest_url: str | None = None) -> Tokenizer:
    """The tokenizer at ``url``; with a manifest, refuse one whose sha256 is not the shards'."""
    fs, path = storage.fs_and_path(url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{url}: no tokenizer.json; pass --tokenizer PATH (the one the shards were built with)")
    if manifest_url is not None:
        want = _manifest(manifest_url).get("tokenizer_sha256")
        got = T.sha256_of(url)
        if want and got != want:
            raise ValueError(f"{url}: sha256 {got[:12]}… is not the tokenizer these shards were built with "
                             f"({want[:12]}… in {manifest_url}); pass --tokenizer with the right file")
    return T.load(url)


# --- decoding ------------------------------------------------------------------------------------

def _time(t: int, kind: str) -> str:
    if t < 0:
        return "time unknown"
    if kind == "ordinal":
        return f"step {t}"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(role: int, ex: Example) -> str:
    if role == ROLE_SELF:
        return ex.self_id
    if role == ROLE_OTHER:
        return ex.other_id
    return "a third author"


@dataclass
class Message:
    role: str
    gap: str
    time: str
    who: str
    body: str
    target: bool = False
    masked: list[str] | None = None  # the target's tokens under the loss mask, decoded one by one
    mask_is_body: bool = False       # the mask covers exactly the body and </msg>, not the prefix


def messages(ex: Example, stream: str, tok: Tokenizer) -> list[Message]:
    """The decoded messages of one stream, in order (the window's last one is the target)."""
    s = ex.streams[stream]
    kind = "ordinal" if ex.time_kind == "ordinal" else "wall"
    out = []
    n = len(s.msg_offsets) - 1
    for i in range(n):
        a, b = s.msg_offsets[i], s.msg_offsets[i + 1]
        ids = s.tokens[a:b]
        gap = tok.id_to_token(ids[2]) if len(ids) > 2 else "?"
        body_ids = ids[render.PREFIX:len(ids) - render.SUFFIX]
        body = tok.decode(body_ids, skip_special_tokens=False)
        m = Message(ROLE_NAMES[s.msg_roles[i]], gap, _time(s.msg_times[i], kind), _who(s.msg_roles[i], ex), body)
        if s.loss_mask is not None and any(s.loss_mask[a:b]):
            m.target = True
            m.masked = [tok.decode([t], skip_special_tokens=False) for t, k in zip(ids, s.loss_mask[a:b]) if k]
            mk = s.loss_mask[a:b]
            m.mask_is_body = not any(mk[:render.PREFIX]) and all(mk[render.PREFIX:])
        out.append(m)
    return out


def _block(m: Message, width: int, indent: str) -> list[str]:
    head = f"{'>> ' if m.target else '   '}<{m.role}> {m.gap:<14} {m.time:<23} {m.who}"
    body = textwrap.wrap(m.body.replace("\n", " ⏎ "), width=max(width - len(indent), 20)) or ["(empty)"]
    return [head, *(indent + line for line in body)]


def render_text(ex: Example, tok: Tokenizer, width: int = WIDTH) -> str:
    """The example as plain text: a header, then each stream's messages (role, gap, time, author, body),
    the target marked ``>>`` and its loss-masked tokens listed between ``[`` ``]``."""
    w = ex.streams["window"]
    lines = [f"example {ex.example_id}" + (f"  (split {ex.split})" if ex.split else ""),
             f"perspective (self): {ex.self_id}    interlocutor (other): {ex.other_id}",
             f"thread {ex.thread_id}, time {ex.time_kind}; tokens: window {len(w.tokens)}, "
             f"own {len(ex.streams['own'].tokens)}, interlocutor {len(ex.streams['other'].tokens)}; "
             f"loss on {sum(w.loss_mask or [])} tokens",
             "each message is <msg> <role> <gap> body </msg>; roles are relative to self", ""]
    for stream in STREAMS:
        msgs = messages(ex, stream, tok)
        lines.append(f"== {STREAM_TITLES[stream]}: {len(msgs)} message(s)")
        if not msgs:
            lines.append("   (none)")
        for m in msgs:
            lines += _block(m, width, "      ")
            if m.masked is not None:
                masked = "".join(f"[{t}]" for t in m.masked).replace("\n", "⏎")
                what = "its body and </msg>" if m.mask_is_body else "NOT exactly its body and </msg>: a bad row"
                lines.append(f"      loss mask = 1 on these {len(m.masked)} tokens ({what}):")
                lines += ["        " + line for line in textwrap.wrap(masked, width=max(width - 8, 20),
                                                                   drop_whitespace=False, break_long_words=True)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(ex: Example, tok: Tokenizer, width: int = WIDTH) -> str:
    """The same view for Markdown (Dagster metadata, docs): a short header and the text in a code block."""
    return (f"**Example `{ex.example_id}`** ({ex.split or 'shards'} split), decoded with the tokenizer: "
            f"the window (target marked `>>`, loss-masked tokens in `[ ]`), the author's own stream and "
            f"the interlocutor's stream.\n\n```text\n{render_text(ex, tok, width)}```\n")


def show(manifest_url: str, index: int | None = None, example_id: str | None = None,
         tokenizer_url: str | None = None, markdown: bool = False, width: int = WIDTH) -> str:
    """Load, assemble and render one example of the split at ``manifest_url``."""
    row, split = load_row(manifest_url, index, example_id)
    tok = load_tokenizer(tokenizer_url or default_tokenizer_url(manifest_url), manifest_url)
    ex = assemble(row, split)
    return render_markdown(ex, tok, width) if markdown else render_text(ex, tok, width)
