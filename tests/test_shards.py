"""The shards stage: rendering round trip, loss mask, manifests, readers, determinism, atomicity.

Inputs: generated `timeline` + `pair_examples` from real Diplomacy and Reddit texts (see
tests/test_tokenizer.py `make_inputs`); the last test runs the real pipeline end to end.
"""

import json
import os
import re

import duckdb
import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.stages import shards as SH
from pipelines.core import storage
from pipelines.stages import tokenizer as T
from schemas import EXAMPLES as E
from schemas import SHARD as S
from schemas import SHARD_REF as R
from schemas import SHARD_SCHEMA_VERSION
from schemas import TOKEN_STORE as TS
from schemas.shards import SHARD_REF_SCHEMA_VERSION
from schemas import TIMELINE as TL
from schemas.shards import ROLE_NAMES
from test_tokenizer import _ctx, make_inputs

SMALL = {"target_file_bytes": 20_000, "row_group_rows": 16}
MANIFEST_KEYS = ["schema_version", "split", "tokenizer_sha256", "vocab_size", "token_dtype", "special_tokens",
                 "time_kind", "rows", "tokens", "target_tokens", "shards"]
REF_MANIFEST_KEYS = [*MANIFEST_KEYS, "layout", "store"]


def _build(out, real, **shards):
    timeline, examples = make_inputs(real, out)
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards={**SMALL, **shards})
    T.run(ctx)
    return timeline, examples, SH.run(ctx).summary()


@pytest.fixture(scope="module")
def built(real, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards"))
    timeline, examples, summary = _build(out, real)
    tok = T.load(storage.join(out, "tokenizer.json"))
    # the reference layout (the default) read as flat rows: what the loader assembles
    rows = pl.concat([pl.from_arrow(SH.read_flat(storage.join(out, "shards", s, SH.MANIFEST))) for s in SH.SPLITS])
    return out, timeline, examples, summary, tok, rows


def _role(author, self_id, other_id):
    return 0 if author == self_id else 1 if author == other_id else 2


def _expected_body(text, self_id, other_id):
    """Slow reference: the anonymised text with each mention made role-relative."""
    def sub(m):
        p = m.group(0)[2:-1] if m.group(0) != T.MENTION else None
        return f"<mention:{ROLE_NAMES[_role(p, self_id, other_id)]}>"
    return re.sub(T.MENTION_OR_MARKER, sub, text)


def _gap_token(gap, ordinal):
    if ordinal:
        return T.GAP_ORDINAL
    if gap is None or gap != gap:
        return T.GAP_NONE
    return next(t for t, bound in T.GAP_BUCKETS if gap < bound)


def _check_stream(tok, row, ex, timeline, prefix, seqs_col, gaps_col):
    """Decode every message of one stream and compare with the reference rendering."""
    ids = T.special_token_ids(tok)
    tokens = row[f"{prefix}_tokens"]
    offs = row[f"{prefix}_msg_offsets"]
    by_seq = timeline.filter(pl.col(TL.timeline_id) == ex[E.timeline_id])
    text = dict(zip(by_seq[TL.seq], by_seq[TL.text]))
    author = dict(zip(by_seq[TL.seq], by_seq[TL.author_id]))
    seqs, gaps = ex[seqs_col], ex[gaps_col]
    assert len(offs) == len(seqs) + 1 and offs[-1] == len(tokens)
    for k, s in enumerate(seqs):
        msg = tokens[offs[k]:offs[k + 1]]
        role = _role(author[s], ex[E.self_id], ex[E.other_id])
        gap = _gap_token(None if gaps is None else gaps[k], gaps is None)
        assert msg[:3] == [ids[T.MSG], ids[T.ROLE_TOKENS[role]], ids[gap]]
        assert msg[-1] == ids[T.END]
        assert tok.decode(msg[3:-1], skip_special_tokens=False) == _expected_body(text[s], ex[E.self_id],
                                                                                 ex[E.other_id])
    return seqs


def test_decoding_gives_back_every_message_in_order_with_roles_and_gaps(built):
    out, timeline, examples, _, tok, rows = built
    exs = {r[E.example_id]: r for r in examples.iter_rows(named=True)}
    for row in rows.head(60).iter_rows(named=True):
        ex = exs[row[S.example_id]]
        _check_stream(tok, row, ex, timeline, "window", E.window_seqs, E.window_gaps)
        _check_stream(tok, row, ex, timeline, "own", E.own_seqs, E.own_gaps)
        _check_stream(tok, row, ex, timeline, "other", E.other_seqs, E.other_gaps)
        ids = dict(zip(timeline.filter(pl.col(TL.timeline_id) == ex[E.timeline_id])[TL.seq],
                       timeline.filter(pl.col(TL.timeline_id) == ex[E.timeline_id])[TL.message_id]))
        assert row[S.window_msg_ids] == [ids[s] for s in ex[E.window_seqs]]
        assert row[S.window_msg_ids][-1] == row[S.target_message_id] == ex[E.target_message_id]
        # Per-token roles repeat each message's role over its tokens.
        offs = row[S.window_msg_offsets]
        for k in range(len(offs) - 1):
            role_id = row[S.window_tokens][offs[k] + 1]
            assert set(row[S.window_roles][offs[k]:offs[k + 1]]) == {T.ROLE_TOKENS.index(tok.id_to_token(role_id))}


def test_mentions_become_role_relative_and_never_carry_a_pseudonym(built):
    out, timeline, examples, _, tok, rows = built
    ids = T.special_token_ids(tok)
    flat = np.concatenate([np.asarray(x) for x in rows[S.window_tokens].to_list()])
    assert (flat == ids["<mention:other>"]).sum() > 0 and (flat == ids["<mention:third>"]).sum() > 0
    assert (flat == ids[T.MENTION]).sum() == 0  # every mention resolved for its example
    assert (flat == ids["<EMAIL>"]).sum() > 0  # placeholders stay single tokens
    text = "".join(tok.decode(t, skip_special_tokens=False) for t in rows[S.window_tokens].head(200).to_list())
    assert not re.search(r"u[0-9a-f]{16}", text)


def test_loss_mask_covers_exactly_the_target_body_and_end(built):
    *_, tok, rows = built
    for row in rows.iter_rows(named=True):
        offs, mask = row[S.window_msg_offsets], row[S.window_loss_mask]
        want = [0] * (offs[-2] + 3) + [1] * (offs[-1] - offs[-2] - 3)
        assert mask == want
        assert sum(mask) == row[S.n_target_tokens]
        assert row[S.window_tokens][-1] == tok.token_to_id(T.END)
        assert row[S.n_tokens] == len(row[S.window_tokens]) + len(row[S.own_tokens]) + len(row[S.other_tokens])


def test_every_example_is_one_row_in_its_split_and_splits_are_shuffled(built):
    out, timeline, examples, summary, tok, rows = built
    assert summary["rows_in"] == summary["rows_out"] == examples.height == rows.height
    assert rows[S.example_id].n_unique() == rows.height
    for split in SH.SPLITS:
        got = pl.read_parquet(storage.join(out, "shards", split, "*.parquet"))[S.example_id].to_list()
        want = examples.filter(pl.col(E.split) == split)[E.example_id].to_list()
        assert sorted(got) == sorted(want) and got != sorted(want)


def test_manifests_have_the_contract_shape_and_verify(built):
    out, *_ = built
    for split in SH.SPLITS:
        url = storage.join(out, "shards", split, SH.MANIFEST)
        man = json.loads(open(url).read())
        assert list(man) == REF_MANIFEST_KEYS and man["layout"] == "reference"
        assert man["split"] == split and man["schema_version"] == SHARD_REF_SCHEMA_VERSION
        assert man["token_dtype"] == "int32" and man["special_tokens"]["<pad>"] == 0
        assert man["tokenizer_sha256"] == T.sha256_of(storage.join(out, "tokenizer.json"))
        assert sum(s["rows"] for s in man["shards"]) == man["rows"]
        assert all(sum(s["row_groups"]) == s["rows"] and max(s["row_groups"]) <= SMALL["row_group_rows"]
                   for s in man["shards"])
        res = SH.verify_manifest(url)
        assert res.passed, res.description
        store = man["store"]
        assert store == json.loads(open(storage.join(out, "shards", "train", SH.MANIFEST)).read())["store"]
        assert sum(f["rows"] for f in store["files"]) == store["rows"] and len(store["files"]) > 1
        assert all(f["path"].startswith("../store/part-") for f in store["files"])
    assert sorted(os.listdir(storage.join(out, "shards", SH.STORE))) == sorted(
        f["path"].rsplit("/", 1)[1] for f in store["files"])


def test_the_store_holds_every_referenced_message_once_and_references_name_them(built):
    out, timeline, examples, summary, tok, rows = built
    man = json.loads(open(storage.join(out, "shards", "train", SH.MANIFEST)).read())
    store = pl.concat([pl.read_parquet(storage.join(out, "shards", "train", f["path"])) for f in man["store"]["files"]])
    assert store[TS.message_id].n_unique() == store.height == man["store"]["rows"] <= summary["messages_tokenised"]
    assert store.select(pl.col(TS.tokens).list.len().sum()).item() == man["store"]["tokens"]
    assert man["store"]["tokens"] <= 1.3 * summary["message_tokens"]  # issue #14: each message stored once
    assert summary["stored_tokens"] == man["store"]["tokens"] and summary["layout"] == "reference"
    refs = pl.concat([pl.read_parquet(storage.join(out, "shards", s, "*.parquet")) for s in SH.SPLITS])
    used = pl.concat([refs[c].explode() for c in (R.window_msgs, R.own_msgs, R.other_msgs)]).drop_nulls().unique()
    assert used.len() == store.height and used.min() == 0 and used.max() == store.height - 1
    # a reference's store row is the message the example names
    first = refs.row(0, named=True)
    assert store[TS.message_id][first[R.window_msgs][-1]] == first[R.target_message_id]
    assert (store.sort(TS.timeline_id, TS.seq)[TS.message_id] == store[TS.message_id]).all()


def test_the_flat_layout_writes_schema_version_2_and_removes_the_store(built, real, tmp_path):
    out = str(tmp_path)
    _build(out, real)
    assert os.listdir(storage.join(out, "shards", SH.STORE))
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards={**SMALL, "layout": "flat"})
    summary = SH.run(ctx).summary()
    assert not os.path.exists(storage.join(out, "shards", SH.STORE))  # no manifest names the old store
    assert summary["stored_tokens"] == summary["shard_tokens"] > 5 * summary["message_tokens"]
    for split in SH.SPLITS:
        url = storage.join(out, "shards", split, SH.MANIFEST)
        man = json.loads(open(url).read())
        assert list(man) == MANIFEST_KEYS and man["schema_version"] == SHARD_SCHEMA_VERSION
        assert SH.verify_manifest(url).passed
        # the same rows as the reference layout assembles, file for file
        ref = SH.read_flat(storage.join(built[0], "shards", split, SH.MANIFEST))
        assert SH.read_flat(url).equals(ref)
    # and export-flat of the reference build writes exactly these files
    SH.export_flat(storage.join(built[0], "shards"), str(tmp_path / "exported"))
    for split in SH.SPLITS:
        a, b = storage.join(out, "shards", split), str(tmp_path / "exported" / split)
        assert sorted(os.listdir(a)) == sorted(os.listdir(b))
        for name in os.listdir(a):
            assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read(), name


def test_verify_manifest_names_a_changed_store_file_and_a_reference_past_the_store(built, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(storage.join(built[0], "shards"), out)
    url = storage.join(out, "train", SH.MANIFEST)
    man = json.loads(open(url).read())
    victim = storage.join(out, SH.STORE, man["store"]["files"][1]["path"].rsplit("/", 1)[1])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    res = SH.verify_manifest(url)
    assert not res.passed and man["store"]["files"][1]["path"] in res.description
    shutil.rmtree(out)
    shutil.copytree(storage.join(built[0], "shards"), out)
    man["store"]["rows"] = 3          # a store smaller than the references it must serve
    open(url, "w").write(json.dumps(man))
    res = SH.verify_manifest(url)
    assert not res.passed and "store" in res.description


def test_shard_file_metadata_names_schema_tokenizer_and_special_tokens(built):
    out, *_ = built
    man = json.loads(open(storage.join(out, "shards", "train", SH.MANIFEST)).read())
    md = pq.read_schema(storage.join(out, "shards", "train", man["shards"][0]["path"])).metadata
    assert md[b"schema_version"] == str(SHARD_REF_SCHEMA_VERSION).encode() and md[b"table"] == b"token_examples"
    assert md[b"tokenizer_sha256"].decode() == man["tokenizer_sha256"]
    assert json.loads(md[b"special_tokens"]) == man["special_tokens"]
    assert md[b"time_kind"].decode() == man["time_kind"] == "mixed"
    smd = pq.read_schema(storage.join(out, "shards", "train", man["store"]["files"][0]["path"])).metadata
    assert smd[b"table"] == b"token_store" and smd[b"tokenizer_sha256"].decode() == man["tokenizer_sha256"]


def test_files_have_even_token_counts(built):
    out, *_ = built
    man = json.loads(open(storage.join(out, "shards", "train", SH.MANIFEST)).read())
    tokens = [s["tokens"] for s in man["shards"]]
    rows = pl.read_parquet(storage.join(out, "shards", "train", "*.parquet"))
    assert len(tokens) > 3
    assert max(tokens) - min(tokens) <= 2 * rows[S.n_tokens].max()


def test_polars_duckdb_and_pyarrow_dataset_read_the_shards(built):
    out, *_ = built
    folder = storage.join(out, "shards", "train")
    man = json.loads(open(storage.join(folder, SH.MANIFEST)).read())
    files = [storage.join(folder, s["path"]) for s in man["shards"]]
    store = [os.path.normpath(storage.join(folder, s["path"])) for s in man["store"]["files"]]
    assert pl.scan_parquet(files).select(pl.col(S.n_tokens).sum()).collect().item() == man["tokens"]
    assert pl.scan_parquet(store).select(pl.col(TS.tokens).list.len().sum()).collect().item() == man["store"]["tokens"]
    got = duckdb.sql(f"select count(*), sum(len(window_msgs)) from read_parquet({files!r})").fetchall()[0]
    assert got[0] == man["rows"] and got[1] > 0
    got = duckdb.sql(f"select count(*), sum(len(tokens)) from read_parquet({store!r})").fetchall()[0]
    assert list(got) == [man["store"]["rows"], man["store"]["tokens"]]
    table = ds.dataset(files, format="parquet").to_table(columns=[R.window_msgs, R.n_target_tokens])
    assert table.num_rows == man["rows"] and table.schema.field(R.window_msgs).type.value_type == pa.int64()
    table = ds.dataset(store, format="parquet").to_table(columns=[TS.tokens])
    assert table.num_rows == man["store"]["rows"] and table.schema.field(TS.tokens).type.value_type == pa.int32()


def test_hugging_face_datasets_opens_the_shards_unchanged(built, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from datasets import load_dataset

    out, *_ = built
    folder = storage.join(out, "shards", "train")
    man = json.loads(open(storage.join(folder, SH.MANIFEST)).read())
    files = [storage.join(folder, s["path"]) for s in man["shards"]]
    dset = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert dset.num_rows == man["rows"]
    assert sum(dset[S.n_tokens]) == man["tokens"]
    first = pl.read_parquet(files[0]).row(0, named=True)
    assert dset[0][R.window_msgs] == first[R.window_msgs]
    store = [os.path.normpath(storage.join(folder, s["path"])) for s in man["store"]["files"]]
    sset = load_dataset("parquet", data_files=store, split="train", cache_dir=str(tmp_path / "cache"))
    assert sset.num_rows == man["store"]["rows"] and sum(map(len, sset[TS.tokens])) == man["store"]["tokens"]


def test_same_inputs_and_seed_give_byte_identical_shards(built, real, tmp_path):
    out, *_ = built
    _build(str(tmp_path), real)
    for split in SH.SPLITS:
        a = open(storage.join(out, "shards", split, SH.MANIFEST), "rb").read()
        b = open(storage.join(str(tmp_path), "shards", split, SH.MANIFEST), "rb").read()
        assert a == b  # the manifest holds every file's sha256


@pytest.mark.parametrize("bucket_rows, prefix_hex", [(7, 15), (50, 1)])
def test_buckets_batches_and_id_ties_give_the_same_shards(built, real, tmp_path, monkeypatch, bucket_rows,
                                                          prefix_hex):
    """The reference layout renders the examples a few at a time as they are on storage and
    spills them in buckets of shard rows; with buckets of a few rows, batches of 13 examples and
    one hex digit of example_id to sort by (every id ties, so the whole ids decide), every split
    file and the store are the files of the default run."""
    out, _, examples, summary, *_ = built
    monkeypatch.setattr(SH, "BUCKET_ROWS", bucket_rows)
    monkeypatch.setattr(SH, "ID_PREFIX_HEX", prefix_hex)
    counts = {s: examples.filter(pl.col(E.split) == s).height for s in SH.SPLITS}
    assert max(counts.values()) > 3 * bucket_rows  # several buckets per split
    _, _, again = _build(str(tmp_path), real, examples_per_batch=13)
    for split in SH.SPLITS:
        a = open(storage.join(out, "shards", split, SH.MANIFEST), "rb").read()
        b = open(storage.join(str(tmp_path), "shards", split, SH.MANIFEST), "rb").read()
        assert a == b  # the manifest holds every file's sha256, the store's too
    assert again["messages_over_budget"] == summary["messages_over_budget"]
    assert again["rows_in"] == summary["rows_in"] == examples.height


def test_referenced_keys_are_the_exploded_references_a_batch_at_a_time(built, tmp_path):
    """The keys the Polars path flags a batch of examples at a time are the unique (timeline_id,
    seq) of every example's three streams; a seq past its timeline's end is left out."""
    from pipelines import engines

    out, timeline, examples, *_ = built
    tl = engines.frame(timeline.lazy())
    keys = SH.referenced_keys(tl, storage.join(out, E.name), rows=17)
    exploded = (pl.concat([examples.select(E.timeline_id, pl.col(c).alias(TL.seq)).explode(TL.seq)
                           for c in SH.REF_SEQS]).drop_nulls().unique().sort(E.timeline_id, TL.seq))
    assert keys.rows() == exploded.rows() and keys.height > 100
    msgs = SH.referenced_messages(tl, keys)
    assert msgs.select(TL.timeline_id, TL.seq).rows() == exploded.rows()
    # one example names a message its timeline does not have
    bad = examples.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col(E.own_seqs).list.concat([10**9]))
                                .otherwise(pl.col(E.own_seqs)).alias(E.own_seqs))
    storage.write_table(str(tmp_path / "ex"), bad, schema=E)
    assert SH.referenced_keys(tl, str(tmp_path / "ex"), rows=17).rows() == exploded.rows()


def test_referenced_rows_stream_gives_the_tokens_of_the_whole_frame(built, tmp_path):
    """The Polars path reads the referenced messages from the timeline a few rows at a time and
    tokenises them as they come: the same MessageTokens, field by field, as tokenising the
    referenced rows collected and sorted whole; a timeline stored in another order is refused,
    naming the table."""
    import dataclasses

    from pipelines import engines
    from pipelines.core import render

    out, timeline, examples, _, tok, _ = built
    tl = engines.frame(timeline.lazy())
    users = [examples[E.self_id], examples[E.other_id]]
    whole = render.tokenise_messages(SH.referenced_messages(tl, engines.frame(examples)), tok, 12, users)
    flags = SH.referenced_flags(tl, storage.join(out, E.name), rows=17)
    parts = list(SH.referenced_rows(storage.join(out, TL.name), flags, rows=53))
    assert len(parts) > 3 and sum(p.height for p in parts) == int(flags.seen.sum()) == len(whole.body_len)
    assert TL.text in parts[0].columns
    streamed = render.tokenise_messages(iter(parts), tok, 12, users, total=len(whole.body_len), capacity=10)
    for f in dataclasses.fields(render.MessageTokens):
        a, b = getattr(whole, f.name), getattr(streamed, f.name)
        if isinstance(a, pl.DataFrame):
            assert a.equals(b), f.name
        elif isinstance(a, (pa.Array, pa.ChunkedArray)):
            assert a.equals(b), f.name
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
        else:
            assert a == b, f.name
    assert whole.truncated > 0  # the budget of 12 tokens cuts some bodies: their bytes are decoded again
    # a timeline that is not in (timeline_id, seq) order
    storage.write_table(str(tmp_path / "tl"), timeline.sort(TL.message_id), schema=TL)
    with pytest.raises(RuntimeError, match=r"tl: not stored in \(timeline_id, seq\) order"):
        list(SH.referenced_rows(str(tmp_path / "tl"), flags, rows=301))


def test_shard_order_is_the_sorted_then_permuted_order(built):
    """Each example's place in its split: its rank by example_id among the split's examples,
    permuted by the seed (what split_batches gives), read from two columns of the table."""
    out, _, examples, *_ = built
    url = storage.join(out, E.name)
    splits, index, pos, counts = SH.shard_order(url, seed=7)
    stored = pl.concat(list(SH.example_batches(url, 1000, [E.example_id, E.split])))
    for i, split in enumerate(splits):
        rows = np.flatnonzero((stored[E.split] == split).to_numpy())
        order = rows[stored[E.example_id].gather(rows).arg_sort().to_numpy()]
        order = order[np.random.default_rng(7).permutation(len(order))]
        assert counts[i] == len(rows)
        assert (index[rows] == i).all()
        assert np.array_equal(pos[order], np.arange(len(rows)))


def test_a_crash_mid_shard_leaves_the_previous_manifest_valid(real, tmp_path, monkeypatch):
    out = str(tmp_path)
    _build(out, real)
    url = storage.join(out, "shards", "train", SH.MANIFEST)
    before = open(url, "rb").read()
    writes = []
    real_put = SH._put_bytes

    def crash_on_third_file(fs, path, data):
        writes.append(path)
        if len(writes) == 3:  # a partial file under its temporary name, then the process dies
            with fs.open(path + ".tmp-crash", "wb") as f:
                f.write(data[: len(data) // 2])
            raise RuntimeError("simulated crash mid-shard")
        real_put(fs, path, data)

    monkeypatch.setattr(SH, "_put_bytes", crash_on_third_file)
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards={**SMALL, "seed": 7})
    with pytest.raises(RuntimeError, match="simulated crash"):
        SH.run(ctx)
    assert open(url, "rb").read() == before
    assert SH.verify_manifest(url).passed
    monkeypatch.setattr(SH, "_put_bytes", real_put)
    # The next good run replaces the manifest and removes the leftovers of the crashed one.
    SH.run(ctx)
    assert open(url, "rb").read() != before and SH.verify_manifest(url).passed
    man = json.loads(open(url).read())
    assert sorted(os.listdir(os.path.dirname(url))) == sorted([SH.MANIFEST, *(s["path"] for s in man["shards"])])
    assert sorted(os.listdir(storage.join(out, "shards", SH.STORE))) == sorted(
        f["path"].rsplit("/", 1)[1] for f in man["store"]["files"])


def test_budgets_keep_the_target_and_cut_the_oldest(built, real, tmp_path):
    out, timeline, examples, _, tok, _ = built
    ctx = _ctx(out, shards={"max_message_tokens": 8, "max_window_tokens": 40, "max_stream_tokens": 30})
    cfg = ctx.config.section("shards")
    from pipelines import engines
    msgs = SH.referenced_messages(engines.frame(timeline), engines.frame(examples))
    from pipelines.core import render
    mt = render.tokenise_messages(msgs, tok, cfg.max_message_tokens, [examples[E.self_id], examples[E.other_id]])
    table, dropped = SH.build_split_table(mt, tok, examples, cfg)
    assert dropped["window"] > 0 and dropped["own"] > 0 and mt.truncated > 0
    rows = pl.from_arrow(table)
    exs = {r[E.example_id]: r for r in examples.iter_rows(named=True)}
    full = {m: tok.encode(t).ids for m, t in zip(timeline[TL.message_id], timeline[TL.text].str.replace_all(
        T.MENTION_RE.pattern, T.MENTION))}
    for row in rows.iter_rows(named=True):
        ex = exs[row[S.example_id]]
        assert len(row[S.window_tokens]) <= 40 and len(row[S.own_tokens]) <= 30 and len(row[S.other_tokens]) <= 30
        assert row[S.window_msg_ids][-1] == ex[E.target_message_id]
        offs = row[S.window_msg_offsets]
        body = row[S.window_tokens][offs[-2] + 3:offs[-1] - 1]
        want = full[ex[E.target_message_id]][:8]
        assert len(body) == len(want)  # a prefix of the target's tokens (mentions made role-relative)
        assert [b for b, w in zip(body, want) if w != tok.token_to_id(T.MENTION)] == \
            [w for w in want if w != tok.token_to_id(T.MENTION)]


def test_memory_filesystem_works_end_to_end(built):
    out, timeline, examples, *_ = built
    mem = "memory://shards-test/out"
    storage.write_table(storage.join(mem, TL.name), timeline, schema=TL)
    storage.write_table(storage.join(mem, E.name), examples, schema=E)
    ctx = _ctx(mem, tokenizer={"vocab_size": 1000}, shards=SMALL)
    T.run(ctx)
    summary = SH.run(ctx).summary()
    assert summary["rows_out"] == examples.height
    local = open(storage.join(out, "shards", "train", SH.MANIFEST), "rb").read()
    with fsspec.open(storage.join(mem, "shards", "train", SH.MANIFEST), "rb") as f:
        assert f.read() == local  # same bytes on any filesystem
    assert SH.verify_manifest(storage.join(mem, "shards", "train", SH.MANIFEST)).passed


def test_cut_points_balance_tokens():
    tokens = np.array([5, 1, 1, 1, 9, 1, 1, 1, 1, 3])
    b = SH.cut_points(tokens, 3)
    sums = [tokens[a:c].sum() for a, c in zip(b[:-1], b[1:])]
    assert b[0] == 0 and b[-1] == 10 and sum(sums) == tokens.sum() and len(sums) == 3
    assert SH.cut_points(np.array([], dtype=int), 4) == [0]
    assert SH.cut_points(np.array([3, 3]), 10) == [0, 1, 2]


def test_config_rejects_a_window_too_small_for_a_target(tmp_path):
    from pipelines.core.config import ConfigError
    with pytest.raises(ConfigError, match="max_window_tokens"):
        _ctx(str(tmp_path), shards={"max_message_tokens": 100, "max_window_tokens": 50}).config.section("shards")


@pytest.mark.slow
def test_real_pipeline_builds_verified_shards_that_decode_to_the_timeline(real_built):
    real_config, summary = real_built
    out = real_config.out
    assert summary["tokenizer"]["vocab_size"] == 2000
    assert summary["shards"]["rows_in"] == summary["shards"]["rows_out"] == summary["examples"]["rows_out"]
    tok = T.load(storage.join(out, "tokenizer.json"))
    timeline = storage.read(storage.join(out, TL.name))
    examples = storage.read(storage.join(out, E.name))
    exs = {r[E.example_id]: r for r in examples.iter_rows(named=True)}
    for split in SH.SPLITS:
        url = storage.join(out, "shards", split, SH.MANIFEST)
        assert SH.verify_manifest(url).passed
    man = json.loads(open(storage.join(out, "shards", "train", SH.MANIFEST)).read())
    url = storage.join(out, "shards", "train", SH.MANIFEST)
    rows = pl.from_arrow(SH.as_flat(SH.read_file(url, man["shards"][0]), url, man))
    assert man["time_kind"] == "mixed" and set(rows[S.time_kind]) == {"wall", "ordinal"}
    checked = 0
    for row in rows.head(400).iter_rows(named=True):
        ex = exs[row[S.example_id]]
        if len(row[S.window_msg_ids]) != len(ex[E.window_seqs]) or \
                len(row[S.own_msg_times]) != len(ex[E.own_seqs]) or \
                len(row[S.other_msg_times]) != len(ex[E.other_seqs]):
            continue  # cut by a token budget: covered by test_budgets_keep_the_target_and_cut_the_oldest
        cap = SH.ShardsConfig().max_message_tokens + 4
        if any(b - a >= cap for p in ("window", "own", "other")
               for a, b in zip(row[f"{p}_msg_offsets"][:-1], row[f"{p}_msg_offsets"][1:])):
            continue  # a truncated body: covered by test_budgets_keep_the_target_and_cut_the_oldest
        _check_stream(tok, row, ex, timeline, "window", E.window_seqs, E.window_gaps)
        _check_stream(tok, row, ex, timeline, "own", E.own_seqs, E.own_gaps)
        _check_stream(tok, row, ex, timeline, "other", E.other_seqs, E.other_gaps)
        checked += 1
    assert checked > 100


def test_docs_hold_the_shard_schema_table():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "shards.md").read_text()
    assert S.markdown() in doc and TS.markdown() in doc and R.markdown() in doc
