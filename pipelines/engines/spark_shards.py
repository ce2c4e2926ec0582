"""Shards on Spark: the side-by-side twin of pipelines/stages/shards.py (the tokenizer stage is
written once for both engines, pipelines/stages/tokenizer.py). The shards are byte for byte
the Polars engine's (same rows, order, file boundaries, names and manifest).

Shards (:func:`run`):

1. Tokenise: every referenced message once, :func:`pipelines.core.render.tokenise_messages` per
   Arrow batch (``mapInArrow``); the result travels as one row per message (ids, the
   pseudonym of each ``<mention>`` id, body length and bytes, time).
2. Order: per split, examples ranked by `example_id` (global sort + ``zipWithIndex``) and
   moved to their place in the seeded permutation (the permutation, one int per example,
   is drawn on the driver with the same generator and broadcast).
3. Render: examples are hashed into batches; a co-group brings each batch the token rows of
   the messages it references, a :class:`pipelines.core.render.MessageTokens` is rebuilt from
   them and :func:`pipelines.core.render.render_examples` renders the rows (a row depends only
   on its example's messages, so batching does not change it).
4. Cut: the driver collects (position, tokens) per split and cuts files with
   :func:`pipelines.stages.shards.cut_points`, as the Polars stage does.
5. Write: rows are partitioned by file and sorted by position; each task encodes whole
   files with :func:`pipelines.stages.shards.encode_shard` and writes them under temporary names
   (renamed into place). The driver writes each split's manifest last
   (:func:`pipelines.stages.shards.publish_manifest`), then removes files no manifest names.
6. Seal: ``OUT/shards/_BUILD_COMPLETE.json``, removed when the stage starts, is written after
   every manifest (:func:`pipelines.stages.shards.write_build_record`), as on Polars.
"""

from __future__ import annotations

import math
import posixpath
import time

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.core import render, storage
from pipelines.stages import tokenizer as TK
from pipelines.stages.shards import SPLITS, ShardsConfig, cut_points, encode_shard, manifest_of, publish_manifest, shard_metadata
from pipelines.stages.shards import config_hash, remove_build_record, write_build_record
from pipelines.core.results import StageResult
from schemas import EXAMPLES as E
from schemas import SHARD as S
from schemas import TIMELINE as TL

# One tokenizer per Python worker process and file (loading one parses the whole JSON).
_TOKENIZERS: dict = {}
_POS, _FILE, _B = "_pos", "_file", "_batch"
_DROPPED = ("window", "own", "other")
_MSG_COLS = (TL.timeline_id, TL.seq, TL.message_id, TL.author_id, TL.text, TL.created_at, TL.time_kind)
# A tokenised message as it travels between tasks.
_TOKENS = pa.schema([
    pa.field(TL.timeline_id, pa.string()), pa.field(TL.seq, pa.int64()), pa.field(TL.message_id, pa.string()),
    pa.field(TL.author_id, pa.string()), pa.field("_ids", pa.list_(pa.int32())),
    pa.field("_mentions", pa.list_(pa.string())), pa.field("_body_len", pa.int64()),
    pa.field("_body_bytes", pa.int32()), pa.field("_time", pa.int64()), pa.field("_ordinal", pa.bool_()),
    pa.field("_truncated", pa.bool_())])
_RENDERED = pa.schema([*(f.with_nullable(True) for f in S.arrow), pa.field(E.split, pa.string()),
                       pa.field(_POS, pa.int64()), *(pa.field(f"_drop_{k}", pa.int64()) for k in _DROPPED)])
_WRITTEN = pa.schema([pa.field(E.split, pa.string()), pa.field(_FILE, pa.int64()), pa.field("entry", pa.string())])


def _tokenizer(url: str, sha: str):
    if (url, sha) not in _TOKENIZERS:
        _TOKENIZERS[(url, sha)] = TK.load(url)
    return _TOKENIZERS[(url, sha)]


# --- shards: tokenise -----------------------------------------------------------------------

def _tokenise(tok_url: str, tok_sha: str, max_message_tokens: int):
    """mapInArrow: timeline rows -> one `_TOKENS` row per message (render.tokenise_messages per batch)."""

    def run(batches):
        tok = _tokenizer(tok_url, tok_sha)
        mention_id = tok.token_to_id(TK.MENTION)
        for b in batches:
            if b.num_rows == 0:
                continue
            msgs = pl.from_arrow(pa.Table.from_batches([b]))
            mt = render.tokenise_messages(msgs, tok, max_message_tokens)
            is_m = mt.ids == mention_id
            lens = np.diff(mt.offsets)
            per_msg = np.bincount(np.repeat(np.arange(len(lens)), lens)[is_m], minlength=len(lens))
            codes = mt.mention[is_m]
            names = mt.codes.take(pa.array(np.where(codes >= 0, codes, 0))) if len(mt.codes) else \
                pa.nulls(len(codes), pa.string())
            names = pa.array([n if c >= 0 else None for n, c in zip(names.to_pylist(), codes)], pa.string())
            yield pa.RecordBatch.from_arrays([
                msgs[TL.timeline_id].to_arrow().cast(pa.string()), msgs[TL.seq].to_arrow().cast(pa.int64()),
                mt.message_id.cast(pa.string()), msgs[TL.author_id].to_arrow().cast(pa.string()),
                pa.ListArray.from_arrays(pa.array(mt.offsets.astype(np.int32)), pa.array(mt.ids, pa.int32())),
                pa.ListArray.from_arrays(pa.array(render.exclusive_cumsum(per_msg).astype(np.int32)), names),
                pa.array(mt.body_len.astype(np.int64)), pa.array(mt.body_bytes.astype(np.int32)),
                pa.array(mt.time.astype(np.int64)), pa.array(mt.ordinal), pa.array(lens > max_message_tokens)],
                schema=_TOKENS)

    return run


def message_tokens(rows: pa.Table, extra_ids: list, mention_id: int) -> render.MessageTokens:
    """A :class:`pipelines.core.render.MessageTokens` from `_TOKENS` rows (what tokenise_messages made
    for them), with the pseudonym dictionary over these messages and ``extra_ids``."""
    df = pl.from_arrow(rows)
    ids_col = rows.column("_ids").combine_chunks()
    lens = _list_lengths(ids_col)
    ids = ids_col.flatten().to_numpy(zero_copy_only=False).astype(np.int32) if len(ids_col) else np.zeros(0, np.int32)
    pseudonyms = df["_mentions"].explode(keep_nulls=False, empty_as_null=False)
    codes = pa.array(pl.concat([df[TL.author_id].cast(pl.String), pseudonyms.cast(pl.String),
                                *(s.cast(pl.String) for s in extra_ids)]).drop_nulls().unique().sort()
                     .to_arrow()).cast(pa.string())
    mention = np.full(len(ids), -2, dtype=np.int64)
    mention[ids == mention_id] = render.code_values(pseudonyms.to_arrow(), codes)
    return render.MessageTokens(
        keys=df.select(pl.col(TL.timeline_id).cast(pl.String), pl.col(TL.seq).cast(pl.Int64)).with_row_index(render.MSG_INDEX),
        offsets=render.exclusive_cumsum(lens), ids=ids, mention=mention,
        body_len=df["_body_len"].to_numpy().astype(np.int64), body_bytes=df["_body_bytes"].to_numpy().astype(np.int32),
        author=render.code_values(rows.column(TL.author_id).combine_chunks().cast(pa.string()), codes),
        time=df["_time"].to_numpy().astype(np.int64), ordinal=df["_ordinal"].to_numpy().astype(bool),
        message_id=rows.column(TL.message_id).combine_chunks().cast(pa.string()), codes=codes, truncated=0)


def _list_lengths(arr: pa.ListArray) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(arr).fill_null(0).to_numpy().astype(np.int64)


# --- shards: render -------------------------------------------------------------------------

def _render(tok_url: str, tok_sha: str, cfg: ShardsConfig):
    """cogroup applyInArrow: (examples of a batch, token rows of their messages) -> rendered rows."""

    def run(ex_table: pa.Table, tok_rows: pa.Table) -> pa.Table:
        if ex_table.num_rows == 0:
            return _RENDERED.empty_table()
        tok = _tokenizer(tok_url, tok_sha)
        ex = pl.from_arrow(ex_table).sort(_POS)
        mt = message_tokens(tok_rows, [ex[E.self_id], ex[E.other_id]], tok.token_to_id(TK.MENTION))
        parts = []
        for a in range(0, ex.height, cfg.examples_per_batch):
            chunk = ex.slice(a, cfg.examples_per_batch)
            t, d = render.render_examples(mt, tok, chunk.select(E.names), max_window_tokens=cfg.max_window_tokens,
                                          max_stream_tokens=cfg.max_stream_tokens)
            n = t.num_rows
            t = (t.append_column(E.split, chunk[E.split].to_arrow().cast(pa.string()))
                 .append_column(_POS, chunk[_POS].to_arrow().cast(pa.int64())))
            # The batch's budget drop counts ride on its first row (summed by the driver).
            for k in _DROPPED:
                t = t.append_column(f"_drop_{k}", pa.array([d[k]] + [None] * (n - 1), pa.int64()))
            parts.append(t.cast(_RENDERED))
        return pa.concat_tables(parts)

    return run


def _positions_of(inv_bc):
    """mapInArrow: (split, example_id, rank in example_id order) -> (split, example_id, position
    after the seeded shuffle), from the broadcast inverse permutation of each split."""

    def run(batches):
        inv = inv_bc.value
        for b in batches:
            if b.num_rows == 0:
                continue
            splits = np.asarray(b.column(0).to_numpy(zero_copy_only=False), dtype=object)
            ranks = b.column(2).to_numpy()
            pos = np.empty(b.num_rows, dtype=np.int64)
            for s in set(splits.tolist()):
                m = splits == s
                pos[m] = inv[s][ranks[m]]
            yield pa.RecordBatch.from_arrays([b.column(0), b.column(1), pa.array(pos)],
                                             names=[E.split, E.example_id, _POS])

    return run


# --- shards: write --------------------------------------------------------------------------

def _write_files(urls: dict, metas: dict, cfg: ShardsConfig):
    """mapInArrow over rows partitioned by (split, file) and sorted by position: each whole file is
    encoded (shards.encode_shard) and written under a temporary name, then renamed."""

    def run(batches):
        import json

        cur, parts = None, []

        def flush():
            split, f = cur
            table = S.conform(pa.Table.from_batches(parts).select(S.names)).replace_schema_metadata(metas[split])
            name, data, entry = encode_shard(table, f, cfg)
            fs, path = storage.fs_and_path(urls[split])
            storage.put_bytes(fs, posixpath.join(path, name), data)
            return pa.RecordBatch.from_pylist([{E.split: split, _FILE: f, "entry": json.dumps(entry)}], schema=_WRITTEN)

        for b in batches:
            if b.num_rows == 0:
                continue
            keys = pl.from_arrow(pa.Table.from_batches([b]).select([E.split, _FILE]))
            change = np.flatnonzero(np.r_[True, (keys[E.split][1:] != keys[E.split][:-1]).to_numpy()
                                          | (keys[_FILE][1:] != keys[_FILE][:-1]).to_numpy()]) if keys.height > 1 \
                else np.array([0])
            bounds = [*change.tolist(), b.num_rows]
            for a, z in zip(bounds[:-1], bounds[1:]):
                key = (keys[E.split][a], int(keys[_FILE][a]))
                if key != cur:
                    if cur is not None:
                        yield flush()
                    cur, parts = key, []
                parts.append(b.slice(a, z - a))
        if cur is not None:
            yield flush()

    return run


def run(ctx, spark) -> StageResult:
    """Spark side of :func:`pipelines.stages.shards.run`: the same files, manifests and summary."""
    import json

    from pyspark.sql import functions as F

    from pipelines.engines.spark import read_table, spark_schema

    cfg = ctx.config.section(ShardsConfig)
    remove_build_record(ctx.config.table_url("shards"))  # incomplete until the record is back
    tok_url = ctx.config.table_url("tokenizer.json")
    tok = TK.load(tok_url)
    tok_sha = TK.sha256_of(tok_url)
    ids = TK.special_token_ids(tok)
    examples = read_table(spark, ctx.config.table_url(E.name), E)
    timeline = read_table(spark, ctx.config.table_url(TL.name), TL)
    cached = []
    t0 = time.monotonic()

    # 1. every referenced message, tokenised once
    refs = None
    for c in (E.window_seqs, E.own_seqs, E.other_seqs):
        r = examples.select(F.col(E.example_id), F.col(E.timeline_id).alias(TL.timeline_id), F.explode(c).alias(TL.seq))
        refs = r if refs is None else refs.unionByName(r)
    refs = refs.filter(F.col(TL.seq).isNotNull()).distinct().cache()
    cached.append(refs)
    msgs = timeline.select(*_MSG_COLS).join(refs.select(TL.timeline_id, TL.seq).distinct(), [TL.timeline_id, TL.seq],
                                            "left_semi")
    toks = msgs.mapInArrow(_tokenise(tok_url, tok_sha, cfg.max_message_tokens),
                           spark_schema(_TOKENS, nullable=True)).cache()
    cached.append(toks)
    tstats = toks.agg(F.count(F.lit(1)), F.sum(F.size("_ids")), F.sum(F.col("_truncated").cast("long"))).collect()[0]
    t_tok = time.monotonic() - t0

    try:
        t1 = time.monotonic()
        # 2. positions: rank by example_id per split, then the seeded permutation
        counts = dict((r[0], int(r[1])) for r in examples.groupBy(E.split).count().collect())
        splits = [*SPLITS, *sorted(set(counts) - set(SPLITS))]
        order = sorted(counts)
        start = dict(zip(order, np.cumsum([0] + [counts[s] for s in order])[:-1].tolist()))
        ranked = (examples.select(E.split, E.example_id).orderBy(E.split, E.example_id).rdd.zipWithIndex()
                  .map(lambda r: (r[0][0], r[0][1], r[1] - start[r[0][0]]))
                  .toDF(f"{E.split} string, {E.example_id} string, _rank long"))
        inv = {}
        for s, n in counts.items():
            perm = np.random.default_rng(cfg.seed).permutation(n)
            pos = np.empty(n, dtype=np.int64)
            pos[perm] = np.arange(n)
            inv[s] = pos
        inv_bc = spark.sparkContext.broadcast(inv)
        placed = ranked.mapInArrow(_positions_of(inv_bc), f"{E.split} string, {E.example_id} string, {_POS} long")
        ex = examples.join(placed.drop(E.split), E.example_id)

        # 3. render in batches, each with the token rows of its messages
        n_batches = max(1, math.ceil(sum(counts.values()) / cfg.examples_per_batch),
                        spark.sparkContext.defaultParallelism)
        ex = ex.withColumn(_B, F.pmod(F.xxhash64(E.example_id), F.lit(n_batches)))
        # (A renamed copy of the batch column: both sides of the co-group derive from `ex`.)
        need = (refs.join(ex.select(E.example_id, F.col(_B).alias("_nb")), E.example_id)
                .select(TL.timeline_id, TL.seq, F.col("_nb").alias(_B)).distinct()
                .join(toks, [TL.timeline_id, TL.seq]))
        rendered = (ex.groupBy(_B).cogroup(need.groupBy(_B))
                    .applyInArrow(_render(tok_url, tok_sha, cfg), spark_schema(_RENDERED, nullable=True)).cache())
        cached.append(rendered)

        # 4. file boundaries per split, as the Polars stage cuts them
        per = pl.from_arrow(rendered.select(E.split, _POS, S.n_tokens, S.n_target_tokens, S.time_kind).toArrow())
        dropped = rendered.agg(*(F.sum(f"_drop_{k}") for k in _DROPPED)).collect()[0]
        bounds, metas, urls, files = {}, {}, {}, []
        for split in splits:
            p = per.filter(pl.col(E.split) == split).sort(_POS)
            tokens = p[S.n_tokens].to_numpy().astype(np.int64)
            est = float(tokens.sum()) * cfg.bytes_per_token
            bounds[split] = cut_points(tokens, math.ceil(est / cfg.target_file_bytes))
            kinds = sorted(set(p[S.time_kind].unique().to_list()))
            tk = kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "wall")
            metas[split] = shard_metadata(tok_sha, ids, tok.get_vocab_size(), tk, split)
            urls[split] = ctx.config.table_url("shards", split)
            fs, path = storage.fs_and_path(urls[split])
            fs.makedirs(path, exist_ok=True)
            files += [(split, i, a, b) for i, (a, b) in enumerate(zip(bounds[split][:-1], bounds[split][1:]))]
        # 5. whole files per task, manifests last
        written = {}
        if files:
            fdf = spark.createDataFrame(files, f"{E.split} string, {_FILE} long, _lo long, _hi long")
            cut = (rendered.join(F.broadcast(fdf), (rendered[E.split] == fdf[E.split]) & (F.col(_POS) >= F.col("_lo"))
                                 & (F.col(_POS) < F.col("_hi"))).drop(fdf[E.split]).drop("_lo", "_hi"))
            out = (cut.repartition(len(files), E.split, _FILE).sortWithinPartitions(E.split, _FILE, _POS)
                   .mapInArrow(_write_files(urls, metas, cfg), spark_schema(_WRITTEN, nullable=True)).collect())
            for r in out:
                written.setdefault(r[0], {})[int(r[1])] = json.loads(r[2])
        summary = {"rows_in": sum(counts.values()), "rows_out": 0, "dropped": {}, "messages_tokenised": int(tstats[0]),
                   "message_tokens": int(tstats[1] or 0), "messages_truncated": int(tstats[2] or 0),
                   "messages_over_budget": {k: int(dropped[i] or 0) for i, k in enumerate(_DROPPED)}, "splits": {}}
        total = 0
        for split in splits:
            shards = [written[split][i] for i in sorted(written.get(split, {}))]
            p = per.filter(pl.col(E.split) == split)
            man = manifest_of(split, tok_sha, ids, tok.get_vocab_size(), metas[split][b"time_kind"].decode(),
                              p.height, int(p[S.n_target_tokens].sum() or 0), shards)
            fs, path = storage.fs_and_path(urls[split])
            publish_manifest(fs, path, man)
            summary["rows_out"] += man["rows"]
            summary["splits"][split] = {"rows": man["rows"], "tokens": man["tokens"], "shards": len(man["shards"])}
            total += man["tokens"]
        write_build_record(ctx.config.table_url("shards"), splits, config_hash=config_hash(ctx.config),
                           tokenizer_sha256=tok_sha, engine="spark")
        t_shards = time.monotonic() - t1
    finally:
        for c in cached:
            c.unpersist()
    summary["shard_tokens"] = total
    summary["tokenise_seconds"] = round(t_tok, 3)
    summary["assemble_write_seconds"] = round(t_shards, 3)
    summary["shard_tokens_per_s"] = round(total / max(t_tok + t_shards, 1e-9))
    ctx.log.info("shards (spark): %d rows, %d tokens", summary["rows_out"], total)
    return StageResult.from_summary("shards", summary)
