"""Tokenizer stage: a byte-level BPE over the anonymised train split -> ``OUT/tokenizer.json``.

Reads ``timeline`` (message text) and ``pair_examples`` (which messages the train split
uses); trains a Hugging Face ``tokenizers`` byte-level BPE on exactly those messages, or
loads a user-supplied ``tokenizer.json`` (``[tokenizer] path``), makes sure every special
token of :data:`SPECIAL_TOKENS` is in it, and writes it atomically (temp name, then move).

Special tokens come in two kinds (see docs/stages/tokenizer.md):

* structural tokens (``<pad>``, ``<msg>``, roles, gap buckets, role-relative mentions) are
  *special*: the shard builder inserts them by id and never matches them in text, so a
  user who writes ``<msg>`` literally gets ordinary text tokens;
* text tokens (PII placeholders and ``<mention>``) are *non-special added tokens*: the
  anonymiser writes them into text and the tokenizer must turn each into one id.

Written once for both engines: the train-split messages are a narwhals semi-join
(:func:`train_split_texts`), the evenly spaced sample in `message_id` order is
``engine.every_nth``, and only the sample is collected (:func:`training_sample`), so the same
``tokenizer.json`` comes out of either engine. On one machine the stage finds the same sample
from the tables as stored (:func:`stored_training_sample`), never holding the split's exploded
references or its texts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import fsspec
import narwhals as nw
import polars as pl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.core import storage
from pipelines.core.settings import TokenizerConfig  # the [tokenizer] section, with every section in core/settings
from pipelines.core.results import StageResult
from schemas import EXAMPLES, TIMELINE
from schemas.placeholders import MENTION_RE, PLACEHOLDERS, PSEUDONYM_HEX, PSEUDONYM_PREFIX
from schemas.shards import END, MENTION, MENTION_ROLE_TOKENS, MSG, PAD, ROLE_TOKENS  # the shard format's names
# Gap buckets: (token, upper bound in seconds, exclusive). The gap is the time since the
# previous message of the same stream as `pair_examples` computed it.
GAP_BUCKETS = (
    ("<gap:seconds>", 60.0),          # [0 s, 1 min)   (negative gaps from clock skew count here)
    ("<gap:minutes>", 3600.0),        # [1 min, 1 h)
    ("<gap:hours>", 86400.0),         # [1 h, 1 day)
    ("<gap:days>", 7 * 86400.0),      # [1 day, 1 week)
    ("<gap:weeks>", float("inf")),    # 1 week or more
)
GAP_NONE = "<gap:none>"        # a clocked message with no previous message (gap unknown)
GAP_ORDINAL = "<gap:ordinal>"  # a source with only an order (Diplomacy): no clock, no gap

STRUCTURAL_TOKENS = (PAD, MSG, END, *ROLE_TOKENS, GAP_NONE, *(t for t, _ in GAP_BUCKETS), GAP_ORDINAL,
                     *MENTION_ROLE_TOKENS)
TEXT_TOKENS = (MENTION, *PLACEHOLDERS.values())
SPECIAL_TOKENS = (*STRUCTURAL_TOKENS, *TEXT_TOKENS)  # trained tokenizers give them ids 0..len-1

# A mention as the anonymiser writes it, or a literal `<mention>` a user typed: both become
# the `<mention>` token, so the i-th match is the i-th `<mention>` id of the message.
MENTION_OR_MARKER = rf"<@{PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_HEX}}}>|{MENTION}"
# (`<` and `>` are literals in both Python and Rust regex; placeholders are [A-Z_] only.)
_TEXT_TOKEN_RE = "|".join([MENTION_RE.pattern, *TEXT_TOKENS])


def mark_mentions(text: pl.Expr) -> pl.Expr:
    """Text as the tokenizer sees it: every ``<@u…>`` mention replaced by ``<mention>``."""
    return text.str.replace_all(MENTION_RE.pattern, MENTION)


def mention_pseudonyms(text: pl.Expr) -> pl.Expr:
    """Per message, the pseudonym of each ``<mention>`` token in order (null for a literal ``<mention>``)."""
    return text.str.extract_all(MENTION_OR_MARKER).list.eval(
        pl.when(pl.element() == MENTION).then(None).otherwise(pl.element().str.slice(2).str.strip_suffix(">")))


def training_text(text: pl.Expr) -> pl.Expr:
    """A message as the trainer sees it: mentions and placeholders are whole tokens, so they are
    blanked out and no pseudonym hex (identity) or placeholder spelling is learnt as merges."""
    return text.str.replace_all(_TEXT_TOKEN_RE, " ")


def train(texts: Iterable[str], cfg: TokenizerConfig, length: int | None = None) -> Tokenizer:
    """A byte-level BPE trained on ``texts`` with :data:`SPECIAL_TOKENS` at ids 0..n-1.

    Texts should have mentions and placeholders removed (they are whole tokens anyway, and
    a pseudonym must never become a vocabulary entry). Deterministic for the same input.
    """
    tok = Tokenizer(models.BPE())
    # No normaliser: decoding gives back the exact text; ByteLevel covers every byte.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer, length=length)
    return with_special_tokens(tok)


TRAIN_BATCH = 10_000


def text_batches(texts: pl.Series, rows: int = TRAIN_BATCH):
    """``texts`` for ``train`` as lists of ``rows`` Python strings, made as the trainer reads them:
    the sample (up to ``max_training_messages``, ~900k at the default) is never a Python list at
    once. The trainer counts words, so the batches train the same tokenizer as the whole list."""
    for i in range(0, texts.len(), rows):
        yield texts.slice(i, rows).to_list()


def with_special_tokens(tok: Tokenizer) -> Tokenizer:
    """``tok`` with every special token present and flagged right (structural special, text tokens not).

    Tokens already in the vocabulary keep their ids; missing ones are appended.
    """
    data = json.loads(tok.to_str())
    added = {a["content"]: a for a in data.get("added_tokens", [])}
    vocab = tok.get_vocab()
    next_id = max(max(vocab.values(), default=-1), max((a["id"] for a in added.values()), default=-1)) + 1
    for t in SPECIAL_TOKENS:
        entry = added.get(t)
        if entry is None:
            tid = vocab.get(t)
            if tid is None:
                tid, next_id = next_id, next_id + 1
            entry = {"id": tid, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                     "normalized": False, "special": True}
            data.setdefault("added_tokens", []).append(entry)
            added[t] = entry
        entry["normalized"] = False
        entry["special"] = t in STRUCTURAL_TOKENS
    data["added_tokens"].sort(key=lambda a: a["id"])
    return Tokenizer.from_str(json.dumps(data))


def load(url: str) -> Tokenizer:
    """A ``tokenizer.json`` from any fsspec URL, ready for shard building.

    Structural special tokens are *not* matched in text (``encode_special_tokens``), so only
    the placeholders and ``<mention>`` in a message become special ids.
    """
    with fsspec.open(url, "rb") as f:
        tok = Tokenizer.from_buffer(f.read())
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"{url}: tokenizer lacks the special tokens {missing}; rebuild it with the "
                         f"tokenizer stage (it adds them to a user-supplied tokenizer.json)")
    tok.encode_special_tokens = True
    return tok


def special_token_ids(tok: Tokenizer) -> dict[str, int]:
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}


def sha256_of(url: str) -> str:
    with fsspec.open(url, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def train_split_texts(timeline: nw.LazyFrame, examples: nw.LazyFrame) -> nw.LazyFrame:
    """Messages referenced by any train example (window, own or interlocutor stream), once each
    (narwhals frames on either engine)."""
    E, T = EXAMPLES, TIMELINE
    train = examples.filter(nw.col(E.split) == "train")
    refs = [train.select(nw.col(E.timeline_id).alias(T.timeline_id), nw.col(c).alias(T.seq)).explode(T.seq)
            for c in (E.window_seqs, E.own_seqs, E.other_seqs)]
    keys = nw.concat(refs).filter(~nw.col(T.seq).is_null()).unique()
    return (timeline.select(T.timeline_id, T.seq, T.message_id, T.text)
            .join(keys, on=[T.timeline_id, T.seq], how="semi"))


def sample_step(rows_in: int, cfg: TokenizerConfig) -> int:
    """Every how many train-split messages one is trained on: the ceiling that keeps the sample
    within ``max_training_messages``, evenly spaced and deterministic."""
    return max(-(-rows_in // cfg.max_training_messages), 1)


def training_sample(timeline: nw.LazyFrame, examples: nw.LazyFrame, cfg: TokenizerConfig, engine
                    ) -> tuple[int, pl.Series]:
    """(train-split messages, the texts trained on): at most ``cfg.max_training_messages``, evenly
    spaced in `message_id` order (``engine.every_nth``), as :func:`training_text`. Only the sample
    is collected: the BPE trains in this process on the same input on either engine. The sample
    is chosen on the ids alone (a sort of ids, not of every text), then its texts are joined."""
    from pipelines.engines import to_polars

    T = TIMELINE
    with engine.held(train_split_texts(timeline, examples).select(T.message_id, T.text)) as msgs:
        rows_in = int(to_polars(msgs.select(nw.len().alias("n")))["n"][0])
        step = sample_step(rows_in, cfg)
        if step > 1:
            ids = engine.materialize(engine.every_nth(msgs.select(T.message_id), [T.message_id], step))
            msgs = msgs.join(ids, on=T.message_id, how="semi")
        sample = to_polars(msgs)
    texts = sample.sort(T.message_id).select(training_text(pl.col(T.text).cast(pl.String)))
    return rows_in, texts[T.text]


def stored_training_sample(timeline_url: str, examples_url: str, cfg: TokenizerConfig,
                           rows: int = storage.ROW_GROUP_ROWS) -> tuple[int, pl.Series]:
    """:func:`training_sample` of the tables as stored, on one machine (Polars): the train split's
    messages flagged a batch of ``rows`` examples at a time (a byte a timeline message:
    ``shards.referenced_flags``), then, past ``max_training_messages``, their message ids read
    and the sample chosen on them, and only the sample's texts read. Neither the split's exploded
    references nor its texts are held (at 4M messages the narwhals definition's semi-join held
    3.3 GB). The same sample."""
    import numpy as np

    from pipelines.stages import shards as SH

    T = TIMELINE
    flags = SH.referenced_flags(nw.from_native(storage.scan(timeline_url)), examples_url, rows, split="train")
    rows_in = int(flags.seen.sum())
    step = sample_step(rows_in, cfg)
    if step > 1:
        ids = [df.select(T.message_id) for df in SH.referenced_rows(timeline_url, flags, rows, [T.message_id])]
        chosen = pl.concat(ids).with_row_index("_i").sort(T.message_id).gather_every(step)["_i"].to_numpy()
        seen = np.zeros_like(flags.seen)
        seen[np.flatnonzero(flags.seen)[chosen]] = True
        flags = flags._replace(seen=seen)
    parts = [df.select(T.message_id, T.text)
             for df in SH.referenced_rows(timeline_url, flags, rows, [T.message_id, T.text])]
    sample = pl.concat(parts) if parts else pl.DataFrame(schema={T.message_id: pl.String, T.text: pl.String})
    texts = sample.sort(T.message_id).select(training_text(pl.col(T.text).cast(pl.String)))
    return rows_in, texts[T.text]


def run(ctx, engine=None) -> StageResult:
    """Train (or load) the tokenizer and write ``OUT/tokenizer.json``.

    Returns ``rows_in`` (train-split messages), ``rows_out`` (messages trained on), the
    messages left out by reason (also the figure ``dropped``, the JSON summary's older name),
    the vocabulary size, the file's sha256 and where it came from. ``engine``: the run's
    (:func:`pipelines.engines.for_run`) by default.
    """
    cfg = ctx.config.section(TokenizerConfig)
    out_url = ctx.config.table_url("tokenizer.json")
    if cfg.path:
        with fsspec.open(cfg.path, "rb") as f:
            tok = with_special_tokens(Tokenizer.from_buffer(f.read()))
        rows_in = rows_out = 0
        dropped: dict[str, int] = {}
        source = "user"
    else:
        from pipelines import engines

        engine = engine or engines.for_run(ctx)
        tl_url, ex_url = ctx.config.table_url(TIMELINE.name), ctx.config.table_url(EXAMPLES.name)
        if engine.distributed:
            rows_in, texts = training_sample(engine.scan(tl_url, TIMELINE), engine.scan(ex_url, EXAMPLES), cfg, engine)
        else:
            rows_in, texts = stored_training_sample(tl_url, ex_url, cfg)
        rows_out = texts.len()
        dropped = {"over_max_training_messages": rows_in - rows_out}
        ctx.log.info("tokenizer: training a %d BPE on %d train-split messages", cfg.vocab_size, rows_out)
        tok = train(text_batches(texts), cfg, length=rows_out)
        source = "trained"
    data = tok.to_str().encode("utf-8")
    storage.write_bytes(out_url, data)
    return StageResult("tokenizer", rows_in, rows_out, dropped, figures={
        "dropped": dropped, "source": source, "vocab_size": tok.get_vocab_size(),
        "sha256": hashlib.sha256(data).hexdigest(), "url": out_url})
