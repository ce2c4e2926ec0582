"""The tokenizer stage: special tokens as units, train split only, user tokenizers, HF round trip.

Inputs are generated `timeline` + `pair_examples` tables (schemas.TIMELINE / EXAMPLES)
built from real texts (Diplomacy messages, Reddit comments) with mentions and
placeholders planted; `make_inputs` is shared with tests/test_shards.py.
"""

import hashlib
import json
from datetime import datetime, timezone

import polars as pl
import pytest
import zstandard

from pipelines import engines
from pipelines.core import storage
from pipelines.stages import tokenizer as T
from pipelines.core.config import ConfigError, from_dict
from pipelines.core.context import RunContext
from schemas import EXAMPLES as E
from schemas import TIMELINE as TL
from schemas.placeholders import PLACEHOLDERS, mention


def _pseudonym(name: str) -> str:
    return "u" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _diplomacy(real, games=2, per_game=160):
    rows = []
    with open(real / "diplomacy" / "train.jsonl") as f:
        for line in f:
            d = json.loads(line)
            game = str(d["game_id"])
            if len({r["game"] for r in rows} | {game}) > games:
                break
            for k, text in enumerate(d["messages"]):
                rows.append({"game": game, "dialog": f"{game}/" + "-".join(sorted([d["speakers"][k], d["receivers"][k]])),
                             "author": d["speakers"][k], "ord": int(d["absolute_message_index"][k]), "text": text})
    df = pl.DataFrame(rows).sort("game", "ord").group_by("game", maintain_order=True).head(per_game)
    return df.with_columns(
        pl.lit("diplomacy").alias("platform"), ("ordinal:" + pl.col("game")).alias("timeline_id"),
        ("diplomacy:" + pl.col("dialog")).alias("thread_id"),
        pl.lit(None, pl.Int64).alias("ts"))


def _reddit(real, n=400):
    dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
    with open(real / "reddit" / "RC_2005-12.zst", "rb") as f:
        data = dctx.stream_reader(f).read()
    rows = [json.loads(line) for line in data.decode().splitlines()[:n]]
    df = pl.DataFrame([{"author": r["author"], "text": r["body"], "ts": int(r["created_utc"]),
                        "thread": r["link_id"]} for r in rows])
    # Keep threads where people talk to each other.
    df = df.filter(pl.col("author") != "[deleted]").filter(pl.len().over("thread") >= 3)
    return df.with_columns(pl.lit("reddit").alias("platform"), pl.lit("wall").alias("timeline_id"),
                           ("reddit:" + pl.col("thread")).alias("thread_id"), pl.col("ts").alias("ord"))


def make_inputs(real, out: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write a `timeline` and a `pair_examples` table under ``out``; return both."""
    d = _diplomacy(real).select("platform", "timeline_id", "thread_id", "author", "ord", "ts", "text")
    r = _reddit(real).select("platform", "timeline_id", "thread_id", "author", "ord", "ts", "text")
    msgs = pl.concat([d, r]).sort("timeline_id", "ord", "thread_id").with_columns(
        pl.int_range(pl.len()).over("timeline_id").alias("seq"),
        pl.col("author").map_elements(_pseudonym, return_dtype=pl.String).alias("author_id"))
    # Plant mentions of an earlier author of the same thread, placeholders, and literal
    # special-token spellings a user might type.
    prev = pl.col("author_id").shift(1).over("thread_id")
    i = pl.int_range(pl.len())
    text = (pl.when((i % 5 == 1) & prev.is_not_null())
            .then(pl.format("{} {}: {}", pl.lit("hey"), pl.lit("<@") + prev + pl.lit(">"), pl.col("text")))
            .when(i % 7 == 2).then(pl.col("text") + f" mail me at {PLACEHOLDERS['EMAIL']} or {PLACEHOLDERS['PHONE']}")
            .when(i % 11 == 3).then(pl.col("text") + " see <URL> <msg> </msg> <self> <pad> <mention>")
            .otherwise(pl.col("text")))
    msgs = msgs.with_columns(text.alias("text"))
    n = msgs.height
    timeline = pl.DataFrame({
        TL.message_id: [f"{p}:{t}:{s}" for p, t, s in zip(msgs["platform"], msgs["timeline_id"], msgs["seq"])],
        TL.platform: msgs["platform"], TL.community: msgs["timeline_id"], TL.thread_id: msgs["thread_id"],
        TL.author_id: msgs["author_id"], TL.author_kind: ["user"] * n,
        TL.created_at: [None if t is None else datetime.fromtimestamp(t, timezone.utc) for t in msgs["ts"]],
        TL.time_ordinal: msgs["ord"],
        TL.time_kind: ["ordinal" if p == "diplomacy" else "wall" for p in msgs["platform"]],
        TL.time_precision: ["ordinal" if p == "diplomacy" else "second" for p in msgs["platform"]],
        TL.order_in_source: msgs["seq"], TL.kind: ["message"] * n, TL.text: msgs["text"],
        TL.source_uri: ["generated"] * n, TL.source_record: msgs["seq"], TL.n_copies: [1] * n,
        TL.pii_types: [[]] * n, TL.is_target: [True] * n, TL.dup_cluster_size: [1] * n, TL.mass_dup: [False] * n,
        TL.timeline_id: msgs["timeline_id"], TL.seq: msgs["seq"], TL.parent_dangling: [False] * n,
    }, schema_overrides={TL.pii_types: pl.List(pl.String)})
    storage.write_table(storage.join(out, TL.name), timeline, schema=TL)

    # Examples: every message with an earlier message by someone else in its thread.
    rows = []
    by_tl = {k: g for (k,), g in timeline.group_by(TL.timeline_id)}
    for tl, g in sorted(by_tl.items()):
        g = g.sort(TL.seq)
        seqs, authors, threads = g[TL.seq].to_list(), g[TL.author_id].to_list(), g[TL.thread_id].to_list()
        times = [None if t is None else t.timestamp() for t in g[TL.created_at].to_list()]
        wall = tl == "wall"

        def gaps(idx):
            if not wall:
                return None
            return [None if k == 0 else times[idx[k]] - times[idx[k - 1]] for k in range(len(idx))]

        for j in range(len(seqs)):
            same = [k for k in range(j) if threads[k] == threads[j]]
            others = [k for k in same if authors[k] != authors[j]]
            if not others:
                continue
            win = (same[-5:]) + [j]
            other_id = authors[others[-1]]
            own = [k for k in range(win[0]) if authors[k] == authors[j]][-4:]
            oth = [k for k in range(win[0]) if authors[k] == other_id][-4:]
            split = ("train", "train", "train", "validation", "test")[int(hashlib.md5(threads[j].encode())
                                                                          .hexdigest(), 16) % 5]
            rows.append({
                E.example_id: hashlib.sha256(f"{seqs[j]}/{tl}/{other_id}".encode()).hexdigest()[:16],
                E.split: split, E.timeline_id: tl, E.platform: "reddit" if wall else "diplomacy",
                E.community: tl, E.thread_id: threads[j], E.target_seq: seqs[j],
                E.target_message_id: g[TL.message_id][j], E.self_id: authors[j], E.other_id: other_id,
                E.window_seqs: [seqs[k] for k in win], E.own_seqs: [seqs[k] for k in own],
                E.other_seqs: [seqs[k] for k in oth],
                E.window_gaps: gaps(win), E.own_gaps: gaps(own), E.other_gaps: gaps(oth), E.labels: None,
            })
    examples = pl.DataFrame(rows, schema=E.polars)
    storage.write_table(storage.join(out, E.name), examples, schema=E)
    return timeline, examples


def _ctx(out: str, **sections) -> RunContext:
    return RunContext(from_dict({"out": out, "sources": [], **sections}))


@pytest.fixture(scope="module")
def trained(real, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tok"))
    timeline, examples = make_inputs(real, out)
    summary = T.run(_ctx(out, tokenizer={"vocab_size": 1000})).summary()
    return out, timeline, examples, summary


def test_inputs_conform_to_schemas(trained):
    out, timeline, examples, _ = trained
    assert set(examples[E.split]) == {"train", "validation", "test"}
    assert storage.read_arrow(storage.join(out, E.name)).schema.equals(E.arrow, check_metadata=False)


def test_trains_on_exactly_the_messages_of_train_examples(trained):
    out, timeline, examples, summary = trained
    train = examples.filter(pl.col(E.split) == "train")
    want = {(tl, s) for tl, a, b, c in zip(train[E.timeline_id], train[E.window_seqs], train[E.own_seqs],
                                           train[E.other_seqs]) for s in [*a, *b, *c]}
    got = engines.to_polars(T.train_split_texts(engines.frame(timeline), engines.frame(examples)))
    assert set(zip(got[TL.timeline_id], got[TL.seq])) == want
    assert summary["rows_in"] == len(want) == summary["rows_out"] + summary["dropped"]["over_max_training_messages"]
    assert summary["source"] == "trained" and summary["vocab_size"] == 1000


@pytest.mark.parametrize("spill", [False, True])
def test_the_sample_is_every_nth_train_message_in_message_id_order(trained, spill):
    """Past ``max_training_messages`` the sample is rows 0, step, 2 step, ... of the train-split
    messages sorted by message_id (chosen on the ids, then their texts joined: the same rows)."""
    from pipelines.core.settings import TokenizerConfig
    from pipelines.engines.polars import PolarsEngine

    out, timeline, examples, _ = trained
    cfg = TokenizerConfig(vocab_size=1000, max_training_messages=97)
    engine = PolarsEngine(spill=spill)
    n, texts = T.training_sample(engines.frame(timeline), engines.frame(examples), cfg, engine)
    every = engines.to_polars(T.train_split_texts(engines.frame(timeline), engines.frame(examples)))
    step = -(-every.height // cfg.max_training_messages)
    want = every.sort(TL.message_id).gather_every(step).select(T.training_text(pl.col(TL.text)))[TL.text]
    assert n == every.height and step > 2 and 0 < texts.len() <= cfg.max_training_messages
    assert texts.to_list() == want.to_list()
    # the stage on one machine reads the stored tables a few rows at a time: the same sample
    stored = T.stored_training_sample(storage.join(out, TL.name), storage.join(out, E.name), cfg, rows=53)
    assert stored[0] == n and stored[1].to_list() == want.to_list()
    whole = TokenizerConfig(vocab_size=1000)
    n_all, all_texts = T.stored_training_sample(storage.join(out, TL.name), storage.join(out, E.name), whole, rows=53)
    assert n_all == n and all_texts.to_list() == every.sort(TL.message_id).select(
        T.training_text(pl.col(TL.text)))[TL.text].to_list()


def test_special_tokens_have_fixed_ids_and_placeholders_are_single_tokens(trained):
    out, *_ = trained
    tok = T.load(storage.join(out, "tokenizer.json"))
    assert [tok.token_to_id(t) for t in T.SPECIAL_TOKENS] == list(range(len(T.SPECIAL_TOKENS)))
    for t in (*PLACEHOLDERS.values(), T.MENTION):
        enc = tok.encode(f"write to {t}, ok")
        assert enc.ids.count(tok.token_to_id(t)) == 1, t
    # Structural tokens typed by a user stay text: never the structural id.
    for t in T.STRUCTURAL_TOKENS:
        ids = tok.encode(f"a {t} b").ids
        assert tok.token_to_id(t) not in ids and tok.decode(ids) == f"a {t} b"


def test_no_pseudonym_becomes_a_vocabulary_entry(trained):
    out, timeline, *_ = trained
    tok = T.load(storage.join(out, "tokenizer.json"))
    vocab = set(tok.get_vocab())
    pieces = {a[i:i + 6] for a in timeline[TL.author_id].unique() for i in range(1, 12)}
    # Byte-level tokens spell text with Ġ for spaces; a hex piece of 6 would only come from ids.
    assert not {v for v in vocab if any(p in v for p in pieces)}


def test_transformers_loads_the_file_and_round_trips(trained):
    from transformers import PreTrainedTokenizerFast

    out, timeline, *_ = trained
    path = storage.join(out, "tokenizer.json")
    tok = T.load(path)
    hf = PreTrainedTokenizerFast(tokenizer_file=path, pad_token=T.PAD)
    assert hf.pad_token_id == 0 and len(hf) == tok.get_vocab_size()
    for text in timeline[TL.text].head(50).str.replace_all(r"<@u[0-9a-f]{16}>", T.MENTION):
        if any(t in text for t in T.STRUCTURAL_TOKENS):
            continue  # transformers matches special tokens in text; our builder never does
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert ids == tok.encode(text).ids
        assert hf.decode(ids) == text
    assert hf.convert_tokens_to_ids(T.MSG) == tok.token_to_id(T.MSG)


def test_training_is_deterministic(trained, tmp_path):
    out, timeline, examples, summary = trained
    storage.write_table(str(tmp_path / TL.name), timeline, schema=TL)
    storage.write_table(str(tmp_path / E.name), examples, schema=E)
    again = T.run(_ctx(str(tmp_path), tokenizer={"vocab_size": 1000})).summary()
    assert again["sha256"] == summary["sha256"]


def test_user_tokenizer_gets_missing_special_tokens_and_keeps_its_ids(trained):
    out, timeline, *_ = trained
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    user = Tokenizer(models.BPE())
    user.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    user.decoder = decoders.ByteLevel()
    user.train_from_iterator(timeline[TL.text].to_list(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<pad>", "<EMAIL>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    url = "memory://tok-user/user-tokenizer.json"
    storage.write_bytes(url, user.to_str().encode())
    summary = T.run(_ctx("memory://tok-user/out", tokenizer={"path": url})).summary()
    tok = T.load("memory://tok-user/out/tokenizer.json")
    assert summary["source"] == "user"
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("<EMAIL>") == 1
    assert all(tok.token_to_id(t) is not None for t in T.SPECIAL_TOKENS)
    assert tok.get_vocab_size() == user.get_vocab_size() + len(T.SPECIAL_TOKENS) - 2
    assert tok.encode("x <PHONE> y").ids.count(tok.token_to_id("<PHONE>")) == 1
    assert tok.token_to_id(T.MSG) not in tok.encode("x <msg> y").ids


def test_config_rejects_a_vocabulary_smaller_than_bytes_plus_specials(tmp_path):
    with pytest.raises(ConfigError, match="vocab_size"):
        _ctx(str(tmp_path), tokenizer={"vocab_size": 100}).config.section("tokenizer")


def test_mention_pseudonyms_follow_mention_tokens_in_order():
    a, b = "u0123456789abcdef", "ufedcba9876543210"
    df = pl.DataFrame({"t": [f"{mention(a)} hi <mention> and {mention(b)}x", "none"]})
    got = df.select(T.mark_mentions(pl.col("t")).alias("m"), T.mention_pseudonyms(pl.col("t")).alias("p"))
    assert got["m"].to_list() == ["<mention> hi <mention> and <mention>x", "none"]
    assert got["p"].to_list() == [[a, None, b], []]


def test_training_on_batches_of_the_sample_gives_the_tokenizer_of_the_whole_list(trained):
    """The stage hands the trainer its sample a batch of strings at a time (never the whole
    sample as a Python list): the same vocabulary and merges, byte for byte."""
    out, timeline, examples, summary = trained
    texts = engines.to_polars(T.train_split_texts(engines.frame(timeline), engines.frame(examples))).select(
        T.training_text(pl.col(TL.text)))[TL.text]
    cfg = T.TokenizerConfig(vocab_size=1000)
    whole = T.train(texts.to_list(), cfg, length=texts.len()).to_str()
    assert texts.len() > 3 * 7
    assert T.train(T.text_batches(texts, 7), cfg, length=texts.len()).to_str() == whole
    assert T.train(T.text_batches(texts), cfg, length=texts.len()).to_str() == whole
