"""Rendering: every message tokenised once, examples assembled by gathering token lists.

A message is rendered as ``<msg> <role> <gap> body </msg>`` where the role is its author's
role relative to the example's perspective (self / other / third) and the gap token is a
bucket of the time since the previous message of the same stream (``<gap:ordinal>`` on a
timeline without a clock, ``<gap:none>`` when the gap is unknown). Bodies are tokenised
once per message with each mention as one ``<mention>`` id; assembling an example is a
gather of those ids plus a substitution of each ``<mention>`` by ``<mention:self|other|third>``
for that example (numpy index arithmetic, no per-token Python, no re-tokenisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer

from pipelines.stages import tokenizer as T
from pipelines.core.progress import progress
from schemas import EXAMPLES as E
from schemas import SHARD as S
from schemas import TIMELINE as TL
from schemas.shards import ROLE_OTHER, ROLE_SELF, ROLE_THIRD

ENCODE_BATCH = 50_000
PREFIX = 3  # <msg> <role> <gap>
SUFFIX = 1  # </msg>
MSG_INDEX = "_msg"  # row of a message in MessageTokens
_EX = "_ex"    # row of an example in its batch


@dataclass
class MessageTokens:
    """Every referenced message, tokenised once: flat ids with per-message offsets.

    ``keys`` maps (timeline_id, seq) to the message row; per-message arrays are indexed by
    that row. ``mention`` holds, per flat token, the code (in ``codes``) of the pseudonym a
    ``<mention>`` id stands for, -1 for an unknown one and -2 for any other token.
    """

    keys: pl.DataFrame
    offsets: np.ndarray      # int64 [n+1]
    ids: np.ndarray          # int32 [offsets[-1]]
    mention: np.ndarray      # int64 [offsets[-1]]
    body_len: np.ndarray     # int64 [n], after truncation to max_message_tokens
    body_bytes: np.ndarray   # int32 [n]
    author: np.ndarray       # int64 [n], code of the author pseudonym (-1 null)
    time: np.ndarray         # int64 [n], epoch seconds (wall) or seq (ordinal)
    ordinal: np.ndarray      # bool [n]
    message_id: pa.Array     # string [n]
    codes: pa.Array          # the pseudonym dictionary the codes index
    truncated: int           # messages whose body was cut


def code_values(values, codes: pa.Array) -> np.ndarray:
    arr = pc.index_in(values.cast(pa.string()), value_set=codes)
    return pl.Series(arr, dtype=pl.Int64).fill_null(-1).to_numpy()


def exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


def tokenise_messages(msgs: pl.DataFrame, tok: Tokenizer, max_message_tokens: int,
                      extra_ids: list[pl.Series] = (), log=None) -> MessageTokens:
    """Tokenise each row of ``msgs`` (timeline columns) exactly once with ``encode_batch``.

    In: ``msgs`` with timeline_id, seq, message_id, author_id, text, created_at, time_kind.
    Out: :class:`MessageTokens`. Raises if a message's ``<mention>`` ids and its mentions
    disagree in number (they are matched by order).
    """
    mention_id = tok.token_to_id(T.MENTION)
    prep = msgs.select(
        T.mark_mentions(pl.col(TL.text)).alias("marked"),
        T.mention_pseudonyms(pl.col(TL.text)).alias("pseudonyms"),
    )
    texts = prep["marked"].to_list()
    lens = np.zeros(len(texts), dtype=np.int64)
    parts = []
    with progress("tokenise messages", log, total=len(texts), unit="msgs") as p:
        for i in range(0, len(texts), ENCODE_BATCH):
            # The tokenizer is a Python API over Rust: one call per batch, ids read out per message.
            encs = tok.encode_batch_fast(texts[i:i + ENCODE_BATCH], add_special_tokens=False)
            lens[i:i + len(encs)] = [len(e.ids) for e in encs]
            parts.append(np.fromiter(chain.from_iterable(e.ids for e in encs), dtype=np.int32,
                                     count=int(lens[i:i + len(encs)].sum())))
            p.update(len(encs))
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    offsets = exclusive_cumsum(lens)

    # Mentions: the k-th <mention> id of a message is its k-th MENTION_OR_MARKER match.
    is_mention = ids == mention_id
    msg_of_token = np.repeat(np.arange(len(lens)), lens)
    n_tok_mentions = np.bincount(msg_of_token[is_mention], minlength=len(lens))
    n_txt_mentions = prep["pseudonyms"].list.len().to_numpy()
    bad = np.nonzero(n_tok_mentions != n_txt_mentions)[0]
    if len(bad):
        raise ValueError(f"message {msgs[TL.message_id][int(bad[0])]!r}: {n_txt_mentions[bad[0]]} mentions in "
                         f"the text but {n_tok_mentions[bad[0]]} <mention> tokens; the tokenizer does not "
                         f"keep <mention> as one token")
    pseudonyms = prep["pseudonyms"].explode(keep_nulls=False, empty_as_null=False)
    codes = pa.array(pl.concat([msgs[TL.author_id], pseudonyms, *extra_ids]).drop_nulls().unique().sort()
                     .to_arrow()).cast(pa.string())
    mention = np.full(len(ids), -2, dtype=np.int64)
    mention[is_mention] = code_values(pseudonyms.to_arrow(), codes)

    body_len = np.minimum(lens, max_message_tokens)
    body_bytes = prep["marked"].str.len_bytes().to_numpy().astype(np.int64)
    cut = np.nonzero(lens > max_message_tokens)[0]
    # Truncated bodies (rare): bytes of what the kept tokens decode to, one decode each.
    for i in cut:
        s = offsets[i]
        body_bytes[i] = len(tok.decode(ids[s:s + max_message_tokens].tolist(), skip_special_tokens=False)
                            .encode("utf-8"))

    ordinal = (msgs[TL.time_kind] == "ordinal").to_numpy()
    time = msgs.select(pl.when(pl.col(TL.time_kind) == "ordinal").then(pl.col(TL.seq))
                       .otherwise(pl.col(TL.created_at).dt.epoch("s")).fill_null(-1)).to_series().to_numpy()
    return MessageTokens(
        keys=msgs.select(TL.timeline_id, TL.seq).with_row_index(MSG_INDEX),
        offsets=offsets, ids=ids, mention=mention, body_len=body_len,
        body_bytes=body_bytes.astype(np.int32), author=code_values(msgs[TL.author_id].to_arrow(), codes),
        time=time.astype(np.int64), ordinal=ordinal, message_id=msgs[TL.message_id].to_arrow(),
        codes=codes, truncated=len(cut))


@dataclass
class _Stream:
    tokens: pa.Array
    roles: pa.Array | None       # per token (window only)
    loss_mask: pa.Array | None   # per token (window only)
    msg_offsets: pa.Array
    msg_times: pa.Array
    msg_roles: pa.Array
    msg_bytes: pa.Array
    msg_ids: pa.Array
    n_tokens: np.ndarray         # per example
    n_target: np.ndarray | None  # per example (window only)
    target_bytes: np.ndarray | None
    target_msg: np.ndarray | None  # message row of each example's target
    dropped: int                 # messages left out by the token budget


def _list(offsets: np.ndarray, values: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=typ))


def _assemble(mt: MessageTokens, ids: dict[str, int], ex: pl.DataFrame, seqs: str, gaps: str,
              self_code: np.ndarray, other_code: np.ndarray, budget: int, window: bool) -> _Stream:
    """Render one stream (window, own or interlocutor) of every example in ``ex``."""
    n_ex = ex.height
    flat = (ex.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(_EX), E.timeline_id, seqs,
                      # ordinal timelines have no gaps: NaN per message, the flag says which
                      pl.coalesce(gaps, pl.col(seqs).list.eval(pl.element().cast(pl.Float64) * float("nan"))))
            .explode([seqs, gaps], keep_nulls=False)
            .join(mt.keys, left_on=[E.timeline_id, seqs], right_on=[TL.timeline_id, TL.seq],
                  how="left", maintain_order="left"))
    missing = flat.filter(pl.col(MSG_INDEX).is_null())
    if missing.height:
        r = missing.row(0, named=True)
        raise ValueError(f"pair_examples row {ex[E.example_id][r[_EX]]!r}: {seqs} names seq {r[seqs]} on "
                         f"timeline {r[E.timeline_id]!r}, which is not in the timeline table")
    e = flat[_EX].to_numpy()
    m = flat[MSG_INDEX].to_numpy().astype(np.int64)
    gap = flat[gaps].fill_null(float("nan")).to_numpy()

    # Token budget: keep the latest messages whose rendered lengths fit (a suffix per example).
    L = mt.body_len[m] + PREFIX + SUFFIX
    cnt = np.bincount(e, minlength=n_ex)
    first = exclusive_cumsum(cnt)
    csum = np.cumsum(L)
    last_of = first[1:] - 1
    from_end = csum[last_of[e]] - csum + L if len(e) else L
    keep = from_end <= budget
    dropped = int((~keep).sum())
    if dropped:
        e, m, gap, L = e[keep], m[keep], gap[keep], L[keep]
        cnt = np.bincount(e, minlength=n_ex)
        first = exclusive_cumsum(cnt)

    author = mt.author[m]
    role = np.where(author == self_code[e], ROLE_SELF, np.where(author == other_code[e], ROLE_OTHER, ROLE_THIRD))
    role_tok = np.array([ids[t] for t in T.ROLE_TOKENS], np.int32)
    gap_tok = np.array([ids[t] for t, _ in T.GAP_BUCKETS], np.int32)
    bounds = np.array([b for _, b in T.GAP_BUCKETS[:-1]])
    g = np.where(mt.ordinal[m], ids[T.GAP_ORDINAL],
                 np.where(np.isnan(gap), ids[T.GAP_NONE],
                          gap_tok[np.searchsorted(bounds, np.nan_to_num(gap), side="right")]))

    total = int(L.sum())
    start = exclusive_cumsum(L)[:-1]            # where each rendered message starts
    out = np.empty(total, dtype=np.int32)
    out[start] = ids[T.MSG]
    out[start + 1] = role_tok[role]
    out[start + 2] = g
    out[start + L - 1] = ids[T.END]
    blen = L - PREFIX - SUFFIX
    nb = int(blen.sum())
    bstart = exclusive_cumsum(blen)[:-1]
    dest = np.repeat(start + PREFIX - bstart, blen) + np.arange(nb)
    src = dest + np.repeat(mt.offsets[m] - (start + PREFIX), blen)
    out[dest] = mt.ids[src]
    # Mentions become role-relative for this example: a substitution on gathered ids.
    is_m = np.nonzero(out[dest] == ids[T.MENTION])[0]
    if len(is_m):
        mcode = mt.mention[src[is_m]]
        me = e[np.searchsorted(bstart, is_m, side="right") - 1]  # example of each mention
        mrole = np.where(mcode == self_code[me], ROLE_SELF, np.where(mcode == other_code[me], ROLE_OTHER, ROLE_THIRD))
        out[dest[is_m]] = np.array([ids[t] for t in T.MENTION_ROLE_TOKENS], np.int32)[mrole]

    ex_tokens = np.bincount(e, weights=L, minlength=n_ex).astype(np.int64)
    tok_off = exclusive_cumsum(ex_tokens)
    # Message offsets relative to the example, with the example's total appended.
    moff = np.empty(len(m) + n_ex, dtype=np.int64)
    moff[np.arange(len(m)) + e] = start - tok_off[e]
    moff[first[1:] + np.arange(n_ex)] = ex_tokens
    moff_off = first + np.arange(n_ex + 1)

    roles = mask = n_target = tbytes = tmsg = None
    if window:
        if (cnt == 0).any():
            bad = int(np.nonzero(cnt == 0)[0][0])
            raise ValueError(f"pair_examples row {ex[E.example_id][bad]!r}: empty window (the target must be last)")
        roles = _list(tok_off, np.repeat(role, L).astype(np.int8), pa.int8())
        is_last = np.zeros(len(m), bool)
        is_last[first[1:] - 1] = True
        mk = np.repeat(is_last, L).astype(np.int8)
        for k in range(PREFIX):
            mk[start[is_last] + k] = 0
        mask = _list(tok_off, mk, pa.int8())
        tmsg = m[is_last]
        n_target = blen[is_last] + SUFFIX
        tbytes = mt.body_bytes[tmsg]
    return _Stream(
        tokens=_list(tok_off, out, pa.int32()), roles=roles, loss_mask=mask,
        msg_offsets=_list(moff_off, moff, pa.int32()),
        msg_times=_list(first, mt.time[m], pa.int64()),
        msg_roles=_list(first, role.astype(np.int8), pa.int8()),
        msg_bytes=_list(first, mt.body_bytes[m], pa.int32()),
        msg_ids=pa.ListArray.from_arrays(pa.array(first.astype(np.int32)), mt.message_id.take(pa.array(m))),
        n_tokens=ex_tokens, n_target=n_target, target_bytes=tbytes, target_msg=tmsg, dropped=dropped)


def render_examples(mt: MessageTokens, tok: Tokenizer, ex: pl.DataFrame, *, max_window_tokens: int,
                    max_stream_tokens: int) -> tuple[pa.Table, dict[str, int]]:
    """Shard rows (``schemas.SHARD``) for the ``pair_examples`` rows ``ex``, in ``ex`` order.

    Out: the table and counts of messages left out by the token budgets, per stream.
    Guaranteed: decoding a row's window tokens gives the messages in order with their
    roles; the loss mask is 1 exactly on the target's body and ``</msg>``.
    """
    ids = T.special_token_ids(tok)
    self_code = code_values(ex[E.self_id].to_arrow(), mt.codes)
    other_code = code_values(ex[E.other_id].to_arrow(), mt.codes)
    w = _assemble(mt, ids, ex, E.window_seqs, E.window_gaps, self_code, other_code, max_window_tokens, True)
    o = _assemble(mt, ids, ex, E.own_seqs, E.own_gaps, self_code, other_code, max_stream_tokens, False)
    v = _assemble(mt, ids, ex, E.other_seqs, E.other_gaps, self_code, other_code, max_stream_tokens, False)
    cols = {
        S.example_id: ex[E.example_id].to_arrow(),
        S.self_id: ex[E.self_id].to_arrow(),
        S.other_id: ex[E.other_id].to_arrow(),
        S.thread_id: ex[E.thread_id].to_arrow(),
        S.timeline_id: ex[E.timeline_id].to_arrow(),
        S.target_message_id: ex[E.target_message_id].to_arrow(),
        S.time_kind: pa.array(np.where(mt.ordinal[w.target_msg], "ordinal", "wall")),
        S.window_tokens: w.tokens, S.window_roles: w.roles, S.window_loss_mask: w.loss_mask,
        S.window_msg_offsets: w.msg_offsets, S.window_msg_times: w.msg_times,
        S.window_msg_bytes: w.msg_bytes, S.window_msg_ids: w.msg_ids,
        S.own_tokens: o.tokens, S.own_msg_offsets: o.msg_offsets, S.own_msg_times: o.msg_times,
        S.own_msg_roles: o.msg_roles,
        S.other_tokens: v.tokens, S.other_msg_offsets: v.msg_offsets, S.other_msg_times: v.msg_times,
        S.other_msg_roles: v.msg_roles,
        S.n_tokens: pa.array((w.n_tokens + o.n_tokens + v.n_tokens).astype(np.int32)),
        S.n_target_tokens: pa.array(w.n_target.astype(np.int32)),
        S.target_bytes: pa.array(w.target_bytes.astype(np.int32)),
        S.weight: pa.array(np.ones(ex.height, np.float32)),
        S.target_labels: ex[E.labels].to_arrow(),
    }
    table = S.conform(pa.table(cols))
    return table, {"window": w.dropped, "own": o.dropped, "other": v.dropped}
