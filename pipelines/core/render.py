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
from functools import cached_property
from itertools import chain
from typing import Iterable

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
from schemas import SHARD_REF as R
from schemas import TOKEN_STORE as TS
from schemas.assembly import Messages, Specials, assemble, exclusive_cumsum, list_array
from schemas.shards import PREFIX, SUFFIX

# Messages per encode_batch call: one batch's Encodings are held at once (50,000 held ~0.5 GB
# more at 250k messages, and was no faster).
ENCODE_BATCH = 8_192
PREP_ROWS = 8 * ENCODE_BATCH  # messages whose mentions are marked at a time (before they are encoded)
MSG_INDEX = "_msg"  # row of a message in MessageTokens
_EX = "_ex"    # row of an example in its batch


@dataclass
class MessageTokens:
    """Every referenced message, tokenised once: flat ids with per-message offsets.

    ``keys`` maps (timeline_id, seq) to the message row; per-message arrays are indexed by
    that row. The ``<mention>`` ids are kept sparse: ``mention_pos`` their flat positions
    (sorted), ``mention_codes`` the code (in ``codes``) of the pseudonym each stands for, -1
    for an unknown one (a dense per-token array would cost 8 bytes a token).
    """

    keys: pl.DataFrame
    offsets: np.ndarray      # int64 [n+1]
    ids: np.ndarray          # uint16 (a vocabulary of at most 65,536 ids) or int32 [offsets[-1]]: id_dtype
    mention_pos: np.ndarray  # int64 [k], flat positions of the <mention> ids
    mention_codes: np.ndarray  # int64 [k]
    body_len: np.ndarray     # int64 [n], after truncation to max_message_tokens
    body_bytes: np.ndarray   # int32 [n]
    author: np.ndarray       # int64 [n], code of the author pseudonym (-1 null)
    time: np.ndarray         # int64 [n], epoch seconds (wall) or seq (ordinal)
    ordinal: np.ndarray      # bool [n]
    message_id: pa.Array     # string [n]
    codes: pa.Array          # the pseudonym dictionary the codes index
    truncated: int           # messages whose body was cut

    @cached_property
    def _seq_index(self) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
        # A timeline's seqs are dense from 0 (docs/stages/timeline.md): each timeline gets a code
        # and a slice of one array indexed by seq, holding the message row (-1: not referenced).
        tl = self.keys[TL.timeline_id].cast(pl.String)
        lookup = (tl.unique().sort().to_frame(TL.timeline_id)
                  .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_code")))
        code = tl.to_frame().join(lookup, on=TL.timeline_id, how="left", maintain_order="left")["_code"].to_numpy()
        seq = self.keys[TL.seq].to_numpy().astype(np.int64)
        size = np.zeros(lookup.height, dtype=np.int64)
        np.maximum.at(size, code, seq + 1)
        start = exclusive_cumsum(size)
        dense = np.full(int(start[-1]) if len(start) else 0, -1, dtype=np.int64)
        dense[start[code] + seq] = self.keys[MSG_INDEX].to_numpy()
        return lookup, size, start, dense

    def rows_of(self, timeline_ids: pl.Series, seqs: np.ndarray) -> np.ndarray:
        """The message row of each (timeline_id, seq), -1 where it is not a referenced message:
        arithmetic on the dense seqs, so a batch of references costs no hash table over every
        tokenised message's keys (what a join against ``keys`` built per batch)."""
        lookup, size, start, dense = self._seq_index
        out = np.full(len(seqs), -1, dtype=np.int64)
        if not lookup.height or not len(seqs):
            return out
        code = (timeline_ids.cast(pl.String).to_frame(TL.timeline_id)
                .join(lookup, on=TL.timeline_id, how="left", maintain_order="left")["_code"]
                .fill_null(-1).to_numpy())
        seq = np.asarray(seqs, dtype=np.int64)
        ok = (code >= 0) & (seq >= 0) & (seq < size[np.maximum(code, 0)])
        out[ok] = dense[start[code[ok]] + seq[ok]]
        return out

    def messages(self) -> Messages:
        return Messages(self.offsets, self.ids, None, self.body_len, self.author, self.body_bytes,
                        self.time, self.message_id, mention_pos=self.mention_pos, mention_codes=self.mention_codes)


def code_values(values, codes: pa.Array) -> np.ndarray:
    arr = pc.index_in(values.cast(pa.string()), value_set=codes)
    return pl.Series(arr, dtype=pl.Int64).fill_null(-1).to_numpy()


# What tokenise_messages reads of a timeline row.
TOKENISED_COLUMNS = (TL.timeline_id, TL.seq, TL.message_id, TL.author_id, TL.text, TL.created_at, TL.time_kind)


def id_capacity(msgs: pl.DataFrame) -> int:
    """The token ids :func:`tokenise_messages` reserves first: a token a byte of text, and some."""
    return capacity_for(int(msgs[TL.text].str.len_bytes().sum() or 0), msgs.height)


def id_dtype(vocab_size: int) -> type:
    """The narrowest dtype that holds every id of a ``vocab_size`` vocabulary, for the tokenised
    messages the shards stage holds while it renders: uint16 up to 65,536 ids (the default
    vocabulary is 32,000), else int32. Half the bytes of the largest array the stage holds (4M
    messages: ~230M tokens, 0.46 GB saved); the shards and the store still carry int32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def capacity_for(text_bytes: int, rows: int) -> int:
    """Token ids to reserve for ``rows`` texts of ``text_bytes`` bytes in all."""
    return text_bytes + 16 * rows + 1024


def tokenise_messages(msgs: pl.DataFrame | Iterable[pl.DataFrame], tok: Tokenizer, max_message_tokens: int,
                      extra_ids: list[pl.Series] = (), log=None, *, total: int | None = None,
                      capacity: int | None = None) -> MessageTokens:
    """Tokenise each row of ``msgs`` (timeline columns) exactly once with ``encode_batch``.

    In: ``msgs`` with timeline_id, seq, message_id, author_id, text, created_at, time_kind: a
    DataFrame, or its rows as a stream of DataFrames in order (each one's texts are let go once
    tokenised, so the texts of all the messages are never held; ``total``: the rows, for the
    progress bar; ``capacity``: at least the texts' bytes, the ids' first buffer).
    Out: :class:`MessageTokens`. Raises if a message's ``<mention>`` ids and its mentions
    disagree in number (they are matched by order).
    """
    if isinstance(msgs, pl.DataFrame):
        total, capacity, msgs = msgs.height, id_capacity(msgs), [msgs]
    mention_id = tok.token_to_id(T.MENTION)
    lens, body_bytes, n_txt_mentions, pseudonym_parts, kept = [], [], [], [], []
    # The ids go straight into one buffer sized by the texts' bytes (a byte-level tokenizer makes
    # at most a token a byte): pages past the ids are never touched, so never resident, and the
    # ids are not held twice (as parts, then joined). A tokenizer that makes more grows it.
    dtype = id_dtype(tok.get_vocab_size(with_added_tokens=True))
    ids = np.empty(capacity if capacity is not None else 1024, dtype=dtype)
    used = 0
    with progress("tokenise messages", log, total=total, unit="msgs") as p:
        for part in msgs:
            for a in range(0, max(part.height, 1), PREP_ROWS):  # an empty frame once: its columns are kept
                # The texts with their mentions marked, a slice at a time (not a second copy of them all).
                rows = part.slice(a, PREP_ROWS)
                kept.append(rows.select(c for c in rows.columns if c != TL.text))
                prep = rows.select(
                    T.mark_mentions(pl.col(TL.text)).alias("marked"),
                    T.mention_pseudonyms(pl.col(TL.text)).alias("pseudonyms"),
                )
                body_bytes.append(prep["marked"].str.len_bytes().to_numpy().astype(np.int64))
                n_txt_mentions.append(prep["pseudonyms"].list.len().to_numpy().astype(np.int64))
                pseudonym_parts.append(prep["pseudonyms"].explode(keep_nulls=False, empty_as_null=False))
                for i in range(0, prep.height, ENCODE_BATCH):
                    # The tokenizer is a Python API over Rust: one call per batch, ids read out per
                    # message; the texts become Python strings one batch at a time.
                    encs = tok.encode_batch_fast(prep["marked"].slice(i, ENCODE_BATCH).to_list(),
                                                 add_special_tokens=False)
                    n_ids = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
                    lens.append(n_ids)
                    count = int(n_ids.sum())
                    if used + count > len(ids):
                        ids = np.concatenate([ids[:used], np.empty(max(len(ids), count), dtype=dtype)])
                    ids[used:used + count] = np.fromiter(chain.from_iterable(e.ids for e in encs), dtype=dtype,
                                                         count=count)
                    used += count
                    p.update(len(encs))
                del prep, rows
    msgs = pl.concat(kept) if kept else pl.from_arrow(TL.arrow.empty_table()).select(
        c for c in TL.names if c in TOKENISED_COLUMNS and c != TL.text)
    lens, body_bytes, n_txt_mentions = (np.concatenate(x) if x else np.zeros(0, dtype=np.int64)
                                        for x in (lens, body_bytes, n_txt_mentions))
    ids = ids[:used]
    offsets = exclusive_cumsum(lens)

    # Mentions: the k-th <mention> id of a message is its k-th MENTION_OR_MARKER match. The
    # message of each is found by its position (no per-token array).
    mention_pos = np.flatnonzero(ids == mention_id)
    n_tok_mentions = np.bincount(np.searchsorted(offsets, mention_pos, side="right") - 1, minlength=len(lens))
    bad = np.nonzero(n_tok_mentions != n_txt_mentions)[0]
    if len(bad):
        raise ValueError(f"message {msgs[TL.message_id][int(bad[0])]!r}: {n_txt_mentions[bad[0]]} mentions in "
                         f"the text but {n_tok_mentions[bad[0]]} <mention> tokens; the tokenizer does not "
                         f"keep <mention> as one token")
    pseudonyms = (pl.concat(pseudonym_parts) if pseudonym_parts
                  else pl.Series("pseudonyms", [], dtype=pl.String))
    codes = pa.array(pl.concat([msgs[TL.author_id], pseudonyms, *extra_ids]).drop_nulls().unique().sort()
                     .to_arrow()).cast(pa.string())
    mention_codes = code_values(pseudonyms.to_arrow(), codes)

    body_len = np.minimum(lens, max_message_tokens)
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
        offsets=offsets, ids=ids, mention_pos=mention_pos, mention_codes=mention_codes, body_len=body_len,
        body_bytes=body_bytes.astype(np.int32), author=code_values(msgs[TL.author_id].to_arrow(), codes),
        time=time.astype(np.int64), ordinal=ordinal, message_id=msgs[TL.message_id].to_arrow(),
        codes=codes, truncated=len(cut))


@dataclass
class References:
    """One stream of a batch of examples as references: per kept message (stream order), its
    example ``e``, its message row ``m`` and its gap token id ``g``."""

    e: np.ndarray
    m: np.ndarray
    g: np.ndarray
    dropped: int                 # messages left out by the token budget


def select(mt: MessageTokens, ids: dict[str, int], ex: pl.DataFrame, seqs: str, gaps: str,
           budget: int) -> References:
    """The messages of one stream (window, own or interlocutor) of every example in ``ex`` that
    fit ``budget`` rendered tokens (the latest ones), with their gap tokens."""
    n_ex = ex.height
    flat = (ex.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(_EX), E.timeline_id, seqs,
                      # ordinal timelines have no gaps: NaN per message, the flag says which
                      pl.coalesce(gaps, pl.col(seqs).list.eval(pl.element().cast(pl.Float64) * float("nan"))))
            .explode([seqs, gaps], keep_nulls=False))
    m = mt.rows_of(flat[E.timeline_id], flat[seqs].to_numpy())
    missing = np.flatnonzero(m < 0)
    if len(missing):
        r = flat.row(int(missing[0]), named=True)
        raise ValueError(f"pair_examples row {ex[E.example_id][r[_EX]]!r}: {seqs} names seq {r[seqs]} on "
                         f"timeline {r[E.timeline_id]!r}, which is not in the timeline table")
    e = flat[_EX].to_numpy()
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
        e, m, gap = e[keep], m[keep], gap[keep]

    gap_tok = np.array([ids[t] for t, _ in T.GAP_BUCKETS], np.int32)
    bounds = np.array([b for _, b in T.GAP_BUCKETS[:-1]])
    g = np.where(mt.ordinal[m], ids[T.GAP_ORDINAL],
                 np.where(np.isnan(gap), ids[T.GAP_NONE],
                          gap_tok[np.searchsorted(bounds, np.nan_to_num(gap), side="right")])).astype(np.int32)
    return References(e.astype(np.int64), m, g, dropped)


def _codes(mt: MessageTokens, ex: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return code_values(ex[E.self_id].to_arrow(), mt.codes), code_values(ex[E.other_id].to_arrow(), mt.codes)


def _select_all(mt: MessageTokens, ids: dict[str, int], ex: pl.DataFrame, max_window_tokens: int,
                max_stream_tokens: int) -> dict[str, References]:
    return {"window": select(mt, ids, ex, E.window_seqs, E.window_gaps, max_window_tokens),
            "own": select(mt, ids, ex, E.own_seqs, E.own_gaps, max_stream_tokens),
            "other": select(mt, ids, ex, E.other_seqs, E.other_gaps, max_stream_tokens)}


def _example_columns(ex: pl.DataFrame, ordinal_target: np.ndarray) -> dict:
    return {S.example_id: ex[E.example_id].to_arrow(), S.self_id: ex[E.self_id].to_arrow(),
            S.other_id: ex[E.other_id].to_arrow(), S.thread_id: ex[E.thread_id].to_arrow(),
            S.timeline_id: ex[E.timeline_id].to_arrow(), S.target_message_id: ex[E.target_message_id].to_arrow(),
            S.time_kind: pa.array(np.where(ordinal_target, "ordinal", "wall"))}


def render_examples(mt: MessageTokens, tok: Tokenizer, ex: pl.DataFrame, *, max_window_tokens: int,
                    max_stream_tokens: int) -> tuple[pa.Table, dict[str, int]]:
    """Flat shard rows (``schemas.SHARD``) for the ``pair_examples`` rows ``ex``, in ``ex`` order.

    Out: the table and counts of messages left out by the token budgets, per stream.
    Guaranteed: decoding a row's window tokens gives the messages in order with their
    roles; the loss mask is 1 exactly on the target's body and ``</msg>``.
    """
    ids = T.special_token_ids(tok)
    sp = Specials.of(ids)
    self_code, other_code = _codes(mt, ex)
    refs = _select_all(mt, ids, ex, max_window_tokens, max_stream_tokens)
    msgs = mt.messages()
    st = {k: assemble(msgs, sp, r.e, r.m, r.g, ex.height, self_code, other_code, window=k == "window",
                      example_ids=ex[E.example_id])
          for k, r in refs.items()}
    w, o, v = st["window"], st["own"], st["other"]
    cols = {
        **_example_columns(ex, mt.ordinal[w.target_msg]),
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
    return table, {k: r.dropped for k, r in refs.items()}


def reference_rows(mt: MessageTokens, tok: Tokenizer, ex: pl.DataFrame, *, max_window_tokens: int,
                   max_stream_tokens: int) -> tuple[pa.Table, dict[str, int]]:
    """Reference-layout rows (``schemas.SHARD_REF``) for ``ex``, in ``ex`` order; message rows of
    ``mt`` are the store rows. Assembled (schemas/assembly.py ``flat_rows``) against the store
    written from ``mt``, they are exactly :func:`render_examples`' rows. Out as there."""
    ids = T.special_token_ids(tok)
    self_code, other_code = _codes(mt, ex)
    refs = _select_all(mt, ids, ex, max_window_tokens, max_stream_tokens)
    n = ex.height
    n_tokens = np.zeros(n, np.int64)
    for r in refs.values():
        n_tokens += np.bincount(r.e, weights=mt.body_len[r.m] + PREFIX + SUFFIX, minlength=n).astype(np.int64)
    w = refs["window"]
    cnt = np.bincount(w.e, minlength=n)
    if (cnt == 0).any():
        bad = int(np.nonzero(cnt == 0)[0][0])
        raise ValueError(f"example {ex[E.example_id][bad]!r}: empty window (the target must be last)")
    target = w.m[exclusive_cumsum(cnt)[1:] - 1]
    cols = {**_example_columns(ex, mt.ordinal[target]),
            R.self_code: pa.array(self_code.astype(np.int32)), R.other_code: pa.array(other_code.astype(np.int32))}
    for k, r in refs.items():
        off = exclusive_cumsum(np.bincount(r.e, minlength=n))
        cols[f"{k}_msgs"] = list_array(off, r.m, pa.int64())
        cols[f"{k}_gaps"] = list_array(off, r.g, pa.int32())
    cols.update({
        R.n_tokens: pa.array(n_tokens.astype(np.int32)),
        R.n_target_tokens: pa.array((mt.body_len[target] + SUFFIX).astype(np.int32)),
        R.target_bytes: pa.array(mt.body_bytes[target].astype(np.int32)),
        R.weight: pa.array(np.ones(n, np.float32)),
        R.target_labels: ex[E.labels].to_arrow(),
    })
    return R.conform(pa.table(cols)), {k: r.dropped for k, r in refs.items()}


def store_table(mt: MessageTokens, rows: np.ndarray | None = None) -> pa.Table:
    """The token store rows (``schemas.TOKEN_STORE``) of ``mt``'s messages ``rows`` (sorted, unique;
    default every message), in that order: bodies cut to their kept length, with the author code
    of each ``<mention>`` id. Gathered by a mask over the flat tokens (one byte a token), not a
    per-token index."""
    n_all = len(mt.body_len)
    rows = np.arange(n_all, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    lens = mt.body_len[rows]
    off = exclusive_cumsum(lens)
    n = len(rows)
    if n == n_all and np.array_equal(lens, np.diff(mt.offsets)):  # every body whole: the flat ids as they are
        ids, pos, codes = mt.ids, mt.mention_pos, mt.mention_codes
    else:
        start = mt.offsets[:-1][rows]
        some = lens > 0  # the non-empty bodies start (and end) at distinct positions
        edge = np.zeros(len(mt.ids) + 1, dtype=np.int8)
        edge[start[some]] += 1
        edge[start[some] + lens[some]] -= 1
        keep = np.cumsum(edge[:-1], dtype=np.int8).view(bool)  # 1 inside a kept body, else 0
        del edge
        ids = mt.ids[keep]
        kept = keep[mt.mention_pos]
        pos, codes = mt.mention_pos[kept], mt.mention_codes[kept]
        del keep
    # each kept <mention> id's message, as a row of the store
    msg = np.searchsorted(rows, np.searchsorted(mt.offsets, pos, side="right") - 1)
    per_msg = np.bincount(msg, minlength=n)
    keys = mt.keys
    take = pa.array(rows)
    return TS.conform(pa.table({
        TS.message_id: mt.message_id.take(take), TS.timeline_id: keys[TL.timeline_id].to_arrow().take(take),
        TS.seq: keys[TL.seq].to_arrow().take(take), TS.author_code: pa.array(mt.author[rows].astype(np.int32)),
        TS.tokens: list_array(off, ids.astype(np.int32, copy=False), pa.int32()),
        TS.mention_codes: list_array(exclusive_cumsum(per_msg), codes.astype(np.int32), pa.int32()),
        TS.time: pa.array(mt.time[rows]), TS.ordinal: pa.array(mt.ordinal[rows]),
        TS.body_bytes: pa.array(mt.body_bytes[rows]),
    }))
