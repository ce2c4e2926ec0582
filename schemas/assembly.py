"""Assembling the rendered streams of examples from message references: the one rule that the
flat-layout writer (pipelines/core/render.py) and the loader of the reference layout
(trainer/data.py) share, so both give the same tokens (docs/shards.md).

A message is rendered ``<msg> <role> <gap> body </msg>``. The role is its author's role
relative to the example (self, other, third), each ``<mention>`` id in the body becomes
``<mention:self|other|third>`` for the example, and the gap token comes with the reference.
Everything is numpy index arithmetic over flat arrays: no per-token or per-example Python.
Only numpy and pyarrow are needed, so the trainer can import it without the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.shards import END, MENTION, MENTION_ROLE_TOKENS, MSG, PREFIX, ROLE_OTHER, ROLE_SELF, ROLE_THIRD
from schemas.shards import ROLE_TOKENS, SUFFIX
from schemas.shards import SHARD as S
from schemas.shards import SHARD_REF as R
from schemas.shards import TOKEN_STORE as T


@dataclass(frozen=True)
class Specials:
    """The ids of the structural tokens the rendering writes."""

    msg: int
    end: int
    mention: int
    role: np.ndarray          # int32 [3], index = ROLE_*
    mention_role: np.ndarray  # int32 [3]

    @classmethod
    def of(cls, ids: dict) -> "Specials":
        """From a name -> id mapping (a tokenizer's, or a manifest's ``special_tokens``)."""
        return cls(int(ids[MSG]), int(ids[END]), int(ids[MENTION]),
                   np.array([ids[t] for t in ROLE_TOKENS], np.int32),
                   np.array([ids[t] for t in MENTION_ROLE_TOKENS], np.int32))


@dataclass
class Messages:
    """Per-message arrays the streams gather from, indexed by message row.

    The author code each ``<mention>`` id stands for (-1 unknown) is either dense, ``mention``
    per flat token (any value on other tokens), or sparse, ``mention_pos`` (sorted flat
    positions of the ``<mention>`` ids) with ``mention_codes``. ``body_len`` may be shorter
    than the stored tokens (a cut)."""

    offsets: np.ndarray      # int64 [n+1]: message k's tokens are ids[offsets[k]:offsets[k] + body_len[k]]
    ids: np.ndarray          # int32, or uint16 for a vocabulary of at most 65,536 ids [offsets[-1]]
    mention: np.ndarray | None  # int [offsets[-1]] (dense) or None
    body_len: np.ndarray     # int64 [n]
    author: np.ndarray       # int [n], author code (-1 unknown)
    body_bytes: np.ndarray   # int32 [n]
    time: np.ndarray         # int64 [n]
    message_id: pa.Array | None = None  # string [n]; needed only for the flat view's message ids
    mention_pos: np.ndarray | None = None    # int64 [k] (sparse)
    mention_codes: np.ndarray | None = None  # int [k] (sparse)

    def mention_at(self, pos: np.ndarray) -> np.ndarray:
        """Author codes of the ``<mention>`` ids at flat positions ``pos``."""
        if self.mention is not None:
            return self.mention[pos]
        return self.mention_codes[np.searchsorted(self.mention_pos, pos)]

    @classmethod
    def of_store(cls, table: pa.Table, mention_id: int, with_message_ids: bool = True) -> "Messages":
        """The token store rows (``schemas.TOKEN_STORE``, every file in manifest order) as arrays."""
        toks = table.column(T.tokens).combine_chunks()
        off = toks.offsets.to_numpy().astype(np.int64)
        ids = toks.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]].astype(np.int32, copy=False)
        off = off - off[0]
        mc = table.column(T.mention_codes).combine_chunks()
        moff = mc.offsets.to_numpy()
        codes = mc.values.to_numpy(zero_copy_only=False)[moff[0]:moff[-1]].astype(np.int32, copy=False)
        pos = np.nonzero(ids == mention_id)[0]
        if len(pos) != len(codes):
            raise ValueError(f"token store: {len(pos)} <mention> ids but {len(codes)} mention codes")
        return cls(off, ids, None, np.diff(off), table.column(T.author_code).to_numpy().astype(np.int64),
                   table.column(T.body_bytes).to_numpy().astype(np.int32),
                   table.column(T.time).to_numpy().astype(np.int64),
                   table.column(T.message_id).combine_chunks() if with_message_ids else None,
                   mention_pos=pos, mention_codes=codes)


@dataclass
class Stream:
    """One stream (window, own or interlocutor) of a batch of examples, as flat columns."""

    tokens: pa.Array
    roles: pa.Array | None       # per token (window only)
    loss_mask: pa.Array | None   # per token (window only)
    msg_offsets: pa.Array
    msg_times: pa.Array
    msg_roles: pa.Array
    msg_bytes: pa.Array
    msg_ids: pa.Array | None
    n_tokens: np.ndarray         # per example
    n_target: np.ndarray | None  # per example (window only)
    target_bytes: np.ndarray | None
    target_msg: np.ndarray | None  # message row of each example's target


def exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


def list_array(offsets: np.ndarray, values: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=typ))


def roles_of(codes: np.ndarray, self_code: np.ndarray, other_code: np.ndarray) -> np.ndarray:
    return np.where(codes == self_code, ROLE_SELF, np.where(codes == other_code, ROLE_OTHER, ROLE_THIRD))


def assemble(msgs: Messages, sp: Specials, e: np.ndarray, m: np.ndarray, gap_tokens: np.ndarray, n_ex: int,
             self_code: np.ndarray, other_code: np.ndarray, *, window: bool,
             example_ids=None, per_message: bool = True) -> Stream:
    """Render one stream of ``n_ex`` examples from references.

    ``e`` (non-decreasing) and ``m`` give, per referenced message in stream order, its example
    and its message row; ``gap_tokens`` its gap token id; ``self_code``/``other_code`` are per
    example. ``window`` adds per-token roles and the loss mask (the last message of each
    example is its target). ``example_ids`` only names an example in an error.
    ``per_message=False`` leaves out the per-message times, roles, bytes and ids (None).
    """
    e = np.asarray(e, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    cnt = np.bincount(e, minlength=n_ex)
    first = exclusive_cumsum(cnt)
    L = msgs.body_len[m] + PREFIX + SUFFIX
    role = roles_of(msgs.author[m], self_code[e], other_code[e])

    total = int(L.sum())
    start = exclusive_cumsum(L)[:-1]            # where each rendered message starts
    out = np.empty(total, dtype=np.int32)
    out[start] = sp.msg
    out[start + 1] = sp.role[role]
    out[start + 2] = gap_tokens
    out[start + L - 1] = sp.end
    blen = L - PREFIX - SUFFIX
    nb = int(blen.sum())
    bstart = exclusive_cumsum(blen)[:-1]
    dest = np.repeat(start + PREFIX - bstart, blen) + np.arange(nb)
    src = dest + np.repeat(msgs.offsets[m] - (start + PREFIX), blen)
    out[dest] = msgs.ids[src]
    # Mentions become role-relative for this example: a substitution on gathered ids.
    is_m = np.nonzero(out[dest] == sp.mention)[0]
    if len(is_m):
        mcode = msgs.mention_at(src[is_m])
        me = e[np.searchsorted(bstart, is_m, side="right") - 1]  # example of each mention
        out[dest[is_m]] = sp.mention_role[roles_of(mcode, self_code[me], other_code[me])]

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
            name = example_ids[bad] if example_ids is not None else bad
            raise ValueError(f"example {name!r}: empty window (the target must be last)")
        roles = list_array(tok_off, np.repeat(role, L).astype(np.int8), pa.int8())
        is_last = np.zeros(len(m), bool)
        is_last[first[1:] - 1] = True
        mk = np.repeat(is_last, L).astype(np.int8)
        for k in range(PREFIX):
            mk[start[is_last] + k] = 0
        mask = list_array(tok_off, mk, pa.int8())
        tmsg = m[is_last]
        n_target = blen[is_last] + SUFFIX
        tbytes = msgs.body_bytes[tmsg]
    ids = (pa.ListArray.from_arrays(pa.array(first.astype(np.int32)), msgs.message_id.take(pa.array(m)))
           if msgs.message_id is not None and per_message else None)
    return Stream(
        tokens=list_array(tok_off, out, pa.int32()), roles=roles, loss_mask=mask,
        msg_offsets=list_array(moff_off, moff, pa.int32()),
        msg_times=list_array(first, msgs.time[m], pa.int64()) if per_message else None,
        msg_roles=list_array(first, role.astype(np.int8), pa.int8()) if per_message else None,
        msg_bytes=list_array(first, msgs.body_bytes[m], pa.int32()) if per_message else None, msg_ids=ids,
        n_tokens=ex_tokens, n_target=n_target, target_bytes=tbytes, target_msg=tmsg)


STREAMS = ((R.window_msgs, R.window_gaps, "window"), (R.own_msgs, R.own_gaps, "own"),
           (R.other_msgs, R.other_gaps, "other"))


def _refs(rows: pa.Table, msgs_col: str, gaps_col: str):
    arr = rows.column(msgs_col).combine_chunks()
    off = arr.offsets.to_numpy()
    lens = np.diff(off)
    m = arr.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]]
    gaps = rows.column(gaps_col).combine_chunks()
    goff = gaps.offsets.to_numpy()
    g = gaps.values.to_numpy(zero_copy_only=False)[goff[0]:goff[-1]]
    return np.repeat(np.arange(len(lens)), lens), m, g


def flat_rows(rows: pa.Table, store: Messages, sp: Specials, columns=None) -> pa.Table:
    """Reference-layout rows (``schemas.SHARD_REF``) -> the same examples as flat rows (``schemas.SHARD``).

    ``columns`` (default: all) limits the result to those flat columns (the loader asks for
    the few it collates). Same references, store and specials give exactly the rows the flat
    layout writes for the same examples.
    """
    want = set(S.names if columns is None else columns)
    n = rows.num_rows
    self_code = rows.column(R.self_code).to_numpy().astype(np.int64)
    other_code = rows.column(R.other_code).to_numpy().astype(np.int64)
    out = {}
    for msgs_col, gaps_col, name in STREAMS:
        if not any(c.startswith(name + "_") for c in want):
            continue
        e, m, g = _refs(rows, msgs_col, gaps_col)
        per_message = any(f"{name}_msg_{k}" in want for k in ("times", "roles", "bytes", "ids"))
        st = assemble(store, sp, e, m, g, n, self_code, other_code, window=name == "window", per_message=per_message)
        parts = {"tokens": st.tokens, "roles": st.roles, "loss_mask": st.loss_mask, "msg_offsets": st.msg_offsets,
                 "msg_times": st.msg_times, "msg_roles": st.msg_roles, "msg_bytes": st.msg_bytes, "msg_ids": st.msg_ids}
        for k, v in parts.items():
            if f"{name}_{k}" in want and f"{name}_{k}" in S.names:
                out[f"{name}_{k}"] = v
    for c in S.names:
        if c in want and c not in out:
            out[c] = rows.column(c)
    schema = S.arrow
    return pa.table({c: out[c] for c in S.names if c in out}, schema=pa.schema([schema.field(c) for c in S.names
                                                                                if c in out]))
