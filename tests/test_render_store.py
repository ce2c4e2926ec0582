"""The token store rows of a subset of the tokenised messages (what the shards stage writes: only
the messages the rows reference), on the real samples with bodies cut short: each row is its
message's kept tokens, with one author code per ``<mention>`` id in it."""

import numpy as np
import polars as pl
import pytest

from pipelines import engines
from pipelines.core import render, storage
from pipelines.stages import shards as SH
from pipelines.stages import tokenizer as T
from schemas import EXAMPLES as E
from schemas import TIMELINE as TL
from schemas import TOKEN_STORE as TS


@pytest.fixture(scope="module")
def tokens(real_built):
    config, _ = real_built
    examples = storage.read(config.table_url(E.name))
    msgs = SH.referenced_messages(engines.frame(storage.scan(config.table_url(TL.name))), engines.frame(examples))
    tok = T.load(config.table_url("tokenizer.json"))
    mt = render.tokenise_messages(msgs, tok, 12, [examples[E.self_id], examples[E.other_id]])
    return mt, tok.token_to_id(T.MENTION)


def _expected(mt, mention_id, r):
    """Message row ``r``'s kept tokens and the codes of its <mention> ids, read off the flat arrays."""
    a = int(mt.offsets[r])
    body = mt.ids[a:a + int(mt.body_len[r])]
    at = np.flatnonzero(body == mention_id) + a
    codes = mt.mention_codes[np.searchsorted(mt.mention_pos, at)]
    return body.tolist(), codes.tolist()


@pytest.mark.parametrize("every", [1, 3])
def test_store_rows_are_the_kept_bodies_of_the_chosen_messages(tokens, every):
    mt, mention_id = tokens
    assert mt.truncated > 0 and len(mt.mention_pos) > 0  # some bodies are cut, some mention someone
    rows = np.arange(0, len(mt.body_len), every)
    table = render.store_table(mt, None if every == 1 else rows)
    assert table.num_rows == len(rows)
    assert table.column(TS.message_id).to_pylist() == mt.message_id.take(rows).to_pylist()
    assert table.column(TS.seq).to_pylist() == mt.keys[TL.seq].to_numpy()[rows].tolist()
    toks, codes = table.column(TS.tokens).to_pylist(), table.column(TS.mention_codes).to_pylist()
    cut = 0
    for i, r in enumerate(rows):
        want_toks, want_codes = _expected(mt, mention_id, r)
        assert toks[i] == want_toks and codes[i] == want_codes, int(r)
        cut += mt.body_len[r] < mt.offsets[r + 1] - mt.offsets[r]
    assert cut > 0  # the subset holds cut bodies too


def test_tokenising_in_slices_into_a_buffer_that_grows_gives_the_same_tokens(real_built, tokens, monkeypatch):
    """Mentions marked a few messages at a time and ids written into a buffer reserved far too
    small (so it grows many times): the same ids, offsets, mentions and byte counts."""
    config, _ = real_built
    mt, _ = tokens
    examples = storage.read(config.table_url(E.name))
    msgs = SH.referenced_messages(engines.frame(storage.scan(config.table_url(TL.name))), engines.frame(examples))
    tok = T.load(config.table_url("tokenizer.json"))
    monkeypatch.setattr(render, "PREP_ROWS", 5)
    monkeypatch.setattr(render, "ENCODE_BATCH", 3)
    monkeypatch.setattr(render, "id_capacity", lambda m: 1)
    again = render.tokenise_messages(msgs, tok, 12, [examples[E.self_id], examples[E.other_id]])
    for name in ("offsets", "ids", "mention_pos", "mention_codes", "body_len", "body_bytes", "author"):
        assert np.array_equal(getattr(again, name), getattr(mt, name)), name
    assert again.codes.equals(mt.codes) and again.truncated == mt.truncated


def test_references_find_their_message_rows_by_seq_arithmetic_as_a_join_would(tokens):
    """``MessageTokens.rows_of`` (what rendering uses instead of joining every batch's references
    against every message's keys) gives the join's rows on the real samples, and -1 for a seq
    that is no referenced message: past the timeline's last, negative, or a timeline not there."""
    import polars as pl

    mt, _ = tokens
    keys = mt.keys.with_columns(pl.col(render.MSG_INDEX).cast(pl.Int64))
    rng = np.random.default_rng(0)
    pick = keys.sample(min(keys.height, 5000), seed=0, shuffle=True)
    probe = pl.concat([
        pick.select(TL.timeline_id, TL.seq),
        pick.select(TL.timeline_id, (pl.col(TL.seq) + rng.integers(1, 40)).alias(TL.seq)),  # often past the last
        pick.head(3).select(TL.timeline_id, pl.lit(-1, pl.Int64).alias(TL.seq)),
        pl.DataFrame({TL.timeline_id: ["no such timeline"], TL.seq: [0]}),
    ], how="vertical_relaxed")
    want = (probe.join(keys, on=[TL.timeline_id, TL.seq], how="left", maintain_order="left")[render.MSG_INDEX]
            .fill_null(-1).to_numpy())
    got = mt.rows_of(probe[TL.timeline_id], probe[TL.seq].to_numpy())
    assert (got == want).all()
    assert (want[:pick.height] >= 0).all() and (got[-4:] == -1).all() and (got[pick.height:] == -1).any()


def test_tokenised_ids_are_held_in_two_bytes_and_equal_the_tokenizers(real_built, tokens):
    """The shards stage holds the referenced messages' ids as uint16 when the vocabulary fits (the
    default 32,000 does): the same ids the tokenizer gives, and the store gets them as int32."""
    config, _ = real_built
    mt, _ = tokens
    tok = T.load(config.table_url("tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) <= 1 << 16 and mt.ids.dtype == np.uint16
    assert render.id_dtype(1 << 16) == np.uint16 and render.id_dtype((1 << 16) + 1) == np.int32
    examples = storage.read(config.table_url(E.name))
    msgs = SH.referenced_messages(engines.frame(storage.scan(config.table_url(TL.name))), engines.frame(examples))
    marked = msgs.select(T.mark_mentions(pl.col(TL.text)).alias("m"))["m"].to_list()
    want = [e.ids for e in tok.encode_batch_fast(marked, add_special_tokens=False)]
    got = [mt.ids[mt.offsets[r]:mt.offsets[r + 1]].tolist() for r in range(len(want))]
    assert got == want and max(max(w, default=0) for w in want) > 255  # ids beyond one byte occur
    assert render.store_table(mt).schema.field(TS.tokens).type.value_type == "int32"
