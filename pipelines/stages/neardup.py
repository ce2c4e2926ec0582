"""Near-dup: `messages_anon` -> `messages_dedup`. Near-duplicate messages are marked, never removed.

1. Candidates: messages with at least ``min_tokens`` words (title + text). Shorter messages
   ("lol", "thanks", "+1") are never candidates: repeated short replies are normal speech.
2. MinHash signatures over k-word shingles (pipelines/core/minhash.py, equal to datasketch's),
   computed for the candidates only (a short message's signature is null).
   A signature is ``num_perm`` int32 columns (``_s0``, ``_s1``, ...), not a list: a band reads its
   ``rows`` columns and nothing else. Spilled (a stage's run on Polars) they are a Parquet file
   on disk, never a table in memory (512 bytes a candidate: 1 GB at 2M messages).
3. LSH banding, one band at a time, as a group-by on the band's ``rows`` signature values:
   every message in a bucket is linked to the bucket's smallest row (a star, so a bucket of n
   messages gives n-1 edges, not n^2). Only one band's (row, values) table exists at a time
   (8 + 4 x rows bytes per candidate), and each band's edges are materialised before the next
   band starts: the index beyond the signatures stays about one band's size, whatever the
   number of bands.
4. Verification: an edge is kept when the signatures agree on at least ``threshold`` of
   their values (the Jaccard estimate). The agreements are counted :data:`VERIFY_COLUMNS`
   signature columns at a time (on a distributed engine all at once): each pass joins the edges
   to those columns of u's and of v's signature, adds the equal ones to the edge's count and is
   materialised, so what a pass holds is those columns (8 + 4 x 8 bytes a candidate, each side),
   never whole signatures. (Joining whole signatures to the edges held them all: at 4M messages,
   533,270 candidate edges, 3.7 GB.)
5. Clusters: connected components by iterated min-label propagation over the edges (joins).
6. Within a cluster the canonical copy is the earliest by (created_at, time_ordinal,
   message_id); the others get ``is_target = False`` and ``dup_of`` = the canonical
   message id, and stay in their threads as context. A cluster written by at least
   ``mass_dup_authors`` distinct authors is ``mass_dup`` (spam, copypasta).

One definition for both engines (narwhals over the engine's frames; pipelines/engines):
messages are numbered by ``message_id`` (``_row``), so anchors, labels and every result are
independent of the input order and the same on Polars and Spark. Signatures are computed per
Arrow batch (``map_batches``: numpy, pipelines/core/minhash.py, two batches in flight on two
threads); everything else is column selection, joins and group-bys. The uint32 signature
values travel as the same bits in int32 (Spark has no unsigned types; equality, the only thing
used, is unchanged). No per-document Python objects and no in-memory LSH index.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import narwhals as nw
import numpy as np
import polars as pl
import pyarrow as pa

from pipelines import engines
from pipelines.core.minhash import signatures
from pipelines.core.settings import NearDupConfig  # the [neardup] section, with every section in core/settings
from pipelines.core.results import StageResult
from schemas import ANON, DEDUP
from schemas import MESSAGES as M

ROW, NTOK = "_row", "_n_tokens"
SIGNATURE_BATCH = 16_384  # messages shingled at a time (~25 shingle rows each): bounds the shingle table
SIGNATURE_THREADS = 2  # batches in flight (threads): Python's SHA-1 loop of one beside numpy/Polars of the other
VERIFY_COLUMNS = 8  # signature columns compared per verification pass on one machine (16 passes of 128)
_MAX_ROUNDS = 100  # label propagation with pointer jumping needs O(log diameter) rounds


def document_text(df: pl.DataFrame) -> pl.Series:
    """What near-dup compares: title and text joined by a newline (a title alone also counts)."""
    return df.select(pl.concat_str([pl.col(M.title).fill_null(""), pl.col(M.text).fill_null("")],
                                   separator="\n").alias("doc"))["doc"]


def sig_columns(num_perm: int) -> list[str]:
    """The signature's columns: value i of every message's signature is column ``_s{i}``."""
    return [f"_s{i}" for i in range(num_perm)]


def signature_schema(num_perm: int) -> pa.Schema:
    return pa.schema([pa.field(ROW, pa.int64()), pa.field(NTOK, pa.int32()),
                      *(pa.field(c, pa.int32()) for c in sig_columns(num_perm))])


def _signature_batches(cfg: NearDupConfig, sorted_ids: pl.Series | None = None):
    """map_batches: (row, title, text) -> (row, word count, the signature's ``num_perm`` values as
    int32 bits; null under ``min_tokens`` words: never a candidate, so never computed).
    ``sorted_ids``: the input is (message_id, title, text) instead, and a message's row is its
    rank among these ids (every message id, sorted), found by binary search."""
    schema = signature_schema(cfg.num_perm)

    def one(b: pa.RecordBatch) -> pa.RecordBatch:
        df = pl.from_arrow(pa.Table.from_batches([b]))
        sig, n_words = signatures(document_text(df), cfg.num_perm, cfg.seed, cfg.shingle_size,
                                  min_words=cfg.min_tokens)
        short = n_words < cfg.min_tokens
        values = np.ascontiguousarray(sig.view(np.int32).T)  # one row per signature position
        rows = (b.column(b.schema.get_field_index(ROW)) if sorted_ids is None else
                sorted_ids.search_sorted(df[M.message_id].cast(pl.String)).cast(pl.Int64).to_arrow())
        return pa.RecordBatch.from_arrays(
            [rows, pa.array(n_words.astype(np.int32)),
             *(pa.array(v, mask=short) for v in values)], schema=schema)

    def run(batches):
        yield from _in_order(one, (b for b in batches if b.num_rows))

    return run


def _in_order(fn, items, workers: int = SIGNATURE_THREADS):
    """``fn`` over ``items`` on ``workers`` threads, results in input order, at most ``workers``
    items in flight. A batch's Python steps hold the GIL while the other batch's Polars, SHA-1
    (polars-hash) and numpy work (which release it) runs beside it."""
    pending: deque = deque()
    with ThreadPoolExecutor(workers) as pool:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def candidate_edges(keys: nw.LazyFrame, by: list[str]) -> nw.LazyFrame:
    """LSH buckets as a group-by on ``by`` (a band and its values; one row per candidate and band):
    distinct (u, v) star edges, v = the smallest row of each bucket with more than one row."""
    anchors = (keys.group_by(*by).agg(nw.col(ROW).min().alias("v"), nw.len().alias("_n"))
               .filter(nw.col("_n") > 1).drop("_n"))
    return (keys.join(anchors, on=by).filter(nw.col(ROW) != nw.col("v"))
            .select(nw.col(ROW).alias("u"), "v").unique())


def band_edges(sigs: nw.LazyFrame, cfg: NearDupConfig, engine) -> nw.LazyFrame:
    """Candidate edges of all bands, materialised. On one machine band by band: each band's (row,
    its ``rows`` signature values) table taken from the signatures, grouped, and dropped before the
    next band (the band index is never whole). On a distributed engine every band in one job (a
    group-by on (band, values)): 32 jobs' fixed latency was most of the stage, and the index is
    spread over the executors. The edges are the same. Buckets are the band's values themselves:
    no key hash, no Python per band."""
    by = [f"_b{j}" for j in range(cfg.rows)]
    step = cfg.bands if engine.distributed else 1
    group = ["_band", *by] if step > 1 else by
    cols = sig_columns(cfg.num_perm)

    def keys(band: int) -> nw.LazyFrame:
        values = [nw.col(cols[band * cfg.rows + j]).alias(c) for j, c in enumerate(by)]
        return (sigs.select(ROW, *([nw.lit(band).alias("_band")] if step > 1 else []), *values)
                .filter(~nw.col(by[0]).is_null()))

    per_step = [engine.materialize(candidate_edges(nw.concat([keys(b) for b in range(s, min(s + step, cfg.bands))]),
                                                   group))
                for s in range(0, cfg.bands, step)]
    return engine.materialize(nw.concat(per_step).unique())


def verified_edges(edges: nw.LazyFrame, sigs: nw.LazyFrame, cfg: NearDupConfig, engine) -> nw.LazyFrame:
    """The candidate ``edges`` (u, v) whose signatures agree on at least ``threshold`` of their
    ``num_perm`` values, materialised: the agreements counted :data:`VERIFY_COLUMNS` columns a
    pass (all in one on a distributed engine), each pass a join of the edges to those columns of
    u's and of v's signature (module docstring, step 4)."""
    cols = sig_columns(cfg.num_perm)
    step = cfg.num_perm if engine.distributed else VERIFY_COLUMNS
    agree = edges.select("u", "v", nw.lit(0).cast(nw.Int64).alias("_agree"))
    for a in range(0, cfg.num_perm, step):
        part = cols[a:a + step]

        def side(end: str) -> nw.LazyFrame:
            return sigs.select(nw.col(ROW).alias(end), *(nw.col(c).alias(f"_{end}{j}") for j, c in enumerate(part)))

        hits = nw.sum_horizontal(*((nw.col(f"_u{j}") == nw.col(f"_v{j}")).cast(nw.Int64) for j in range(len(part))))
        agree = engine.materialize(agree.join(side("u"), on="u").join(side("v"), on="v")
                                   .select("u", "v", (nw.col("_agree") + hits).alias("_agree")))
    return engine.materialize(agree.filter(nw.col("_agree") / cfg.num_perm >= cfg.threshold).select("u", "v"))


def components(edges, engine=None):
    """Connected components of an undirected edge list (u, v): (node, label = smallest node).

    Iterated min-label propagation with joins, then pointer jumping (adopt your label's label,
    halving chain lengths each round); every round is materialised and compared with the one
    before; deterministic, O(log diameter) rounds. A Polars DataFrame in gives one out, sorted
    by node; a frame of an engine gives that engine's frame."""
    if isinstance(edges, pl.DataFrame):
        out = components(engines.frame(edges), engines.of(edges))
        return engines.to_polars(out).sort("node")
    both = engine.materialize(nw.concat([edges.select("u", "v"),
                                         edges.select(nw.col("v").alias("u"), nw.col("u").alias("v"))]))
    labels = engine.materialize(both.select(nw.col("u").alias("node")).unique()
                                .with_columns(nw.col("node").alias("label")))
    for _ in range(_MAX_ROUNDS):
        prop = (both.join(labels.rename({"node": "v"}), on="v").group_by("u")
                .agg(nw.col("label").min().alias("_nbr")))
        new = (labels.join(prop.rename({"u": "node"}), on="node", how="left")
               .select("node", nw.min_horizontal("label", "_nbr").alias("label")))
        new = (new.join(new.select(nw.col("node").alias("_l"), nw.col("label").alias("_ll")),
                        left_on="label", right_on="_l", how="left")
               .select("node", nw.min_horizontal("label", "_ll").alias("label")))
        new = engine.materialize(new)
        changed = engines.to_polars(new.join(labels.rename({"label": "_old"}), on="node")
                                    .filter(nw.col("label") != nw.col("_old")).select(nw.len())).item()
        labels = new
        if not changed:
            return labels
    raise RuntimeError(f"near-dup components did not converge in {_MAX_ROUNDS} rounds")


def _count(frame: nw.LazyFrame) -> int:
    return int(engines.to_polars(frame.select(nw.len())).item())


def marks(messages: nw.LazyFrame, cfg: NearDupConfig, engine) -> tuple[nw.LazyFrame, dict]:
    """Mark near-duplicates in ``messages_anon`` rows (rule in the module docstring), on ``engine``.

    Out: the same rows (unordered) with ``is_target``, ``dup_of``, ``dup_cluster_size``,
    ``mass_dup``, and counts: rows_in, rows_out (equal), candidates, short (never candidates),
    candidate_edges, verified_edges, clusters, duplicates (rows with is_target false), by
    platform, mass_dup_clusters and mass_dup_rows. Deterministic for a given input and config.
    """
    # Row numbers by message_id: a small (message_id, _row) table; the texts are read once, for the
    # signatures, and the output is the input joined with the marks (no copy of the rows in between).
    ids = engine.materialize(engine.number_rows(messages.select(M.message_id), ROW, partition_by=[],
                                                order_by=[M.message_id]))
    texts, sorted_ids = messages.select(M.message_id, M.title, M.text), None
    if engine.distributed:
        texts = texts.join(ids, on=M.message_id).select(ROW, M.title, M.text)
    else:  # one machine: each message's row by binary search in the sorted ids, for a join of the
        # texts with the ids holds them (4M messages: 1.95 GB, against 0.64 GB to stream the texts)
        sorted_ids = engines.to_polars(ids.select(M.message_id, ROW)).sort(ROW)[M.message_id].cast(pl.String)
    sigs = engine.materialize(engine.map_batches(texts, _signature_batches(cfg, sorted_ids),
                                                 signature_schema(cfg.num_perm), batch_rows=SIGNATURE_BATCH,
                                                 columnar=True), to_disk=True)
    edges = band_edges(sigs, cfg, engine)
    verified = verified_edges(edges, sigs, cfg, engine)
    n_verified = _count(verified)
    if n_verified:
        labels = components(verified, engine)
    else:
        labels = engine.materialize(edges.select(nw.col("u").alias("node"), nw.col("v").alias("label")).head(0))
    clustered = engine.materialize(
        messages.select(M.message_id, M.created_at, M.time_ordinal, M.author_id, M.platform)
        .join(ids, on=M.message_id).join(labels.rename({"node": ROW}), on=ROW))
    first = engine.first_by(clustered, ["label"], [(M.created_at, False), (M.time_ordinal, False),
                                                   (M.message_id, False)])
    sizes = clustered.group_by("label").agg(nw.len().cast(nw.Int32).alias("_size"))
    authors = (clustered.filter(~nw.col(M.author_id).is_null()).select("label", M.author_id).unique()
               .group_by("label").agg(nw.len().alias("_authors")))
    canon = engine.materialize(
        first.select("label", nw.col(M.message_id).alias("_canon")).join(sizes, on="label")
        .join(authors, on="label", how="left")
        .with_columns((nw.col("_authors").fill_null(0) >= cfg.mass_dup_authors).alias("_mass")))
    tagged = engine.materialize(clustered.select(M.message_id, M.platform, "label").join(
        canon.select("label", "_canon", "_size", "_mass"), on="label"))
    out = (messages.join(tagged.select(M.message_id, "_canon", "_size", "_mass"), on=M.message_id, how="left")
           .with_columns(
               (nw.col("_canon").is_null() | (nw.col("_canon") == nw.col(M.message_id))).alias(DEDUP.is_target),
               nw.when(nw.col("_canon") != nw.col(M.message_id)).then(nw.col("_canon")).alias(DEDUP.dup_of),
               nw.col("_size").fill_null(1).cast(nw.Int32).alias(DEDUP.dup_cluster_size),
               nw.col("_mass").fill_null(False).alias(DEDUP.mass_dup))
           .drop("_canon", "_size", "_mass"))
    # The counts come from the clustered rows (every row outside a cluster is a target, not mass_dup).
    counts = engines.to_polars(sigs.select(nw.len().alias("n"),
                                           (nw.col(NTOK) >= cfg.min_tokens).cast(nw.Int64).sum().alias("c"))).row(0)
    dups = engines.to_polars(tagged.filter(nw.col("_canon") != nw.col(M.message_id)).group_by(M.platform)
                             .agg(nw.len().alias("n")))
    cl = engines.to_polars(canon.select(nw.len().alias("n"), nw.col("_mass").cast(nw.Int64).sum().alias("m"))).row(0)
    mass_rows = engines.to_polars(tagged.select(nw.col("_mass").cast(nw.Int64).sum())).item()
    n, c = int(counts[0]), int(counts[1] or 0)
    stats = {
        "rows_in": n,
        "rows_out": n,
        "dropped": {},
        "candidates": c,
        "short": n - c,
        "candidate_edges": _count(edges),
        "verified_edges": n_verified,
        "clusters": int(cl[0]),
        "duplicates": int(dups["n"].sum()),
        "duplicates_by_platform": dict(sorted((k, int(v)) for k, v in dups.iter_rows())),
        "mass_dup_clusters": int(cl[1] or 0),
        "mass_dup_rows": int(mass_rows or 0),
    }
    return out, stats


def near_dedup(df: pl.DataFrame, cfg: NearDupConfig | None = None) -> tuple[pl.DataFrame, dict]:
    """:func:`marks` on a Polars DataFrame (tests, benchmarks): the rows in their input order."""
    cfg = cfg or NearDupConfig()
    out, stats = marks(engines.frame(df.with_row_index("_in")), cfg, engines.of(df))
    return engines.to_polars(out).sort("_in").drop("_in"), stats


# Rows the Polars engine sorts at a time when it writes `messages_dedup` (a bucket of message ids).
BUCKET_ROWS = 250_000


def run(ctx, engine=None) -> StageResult:
    """Read `messages_anon`, write `messages_dedup` sorted by `message_id`; return the counts (see
    :func:`marks`; its ``dropped`` stays a figure, the JSON summary's older name for ``dropped_by_reason``).
    Polars, past :data:`BUCKET_ROWS` rows: the marked rows are sorted and written a bucket of message
    ids at a time (docs/architecture.md, "Buckets"), the same file as one sort of every row."""
    cfg = ctx.config.section(NearDupConfig)
    engine = engine or engines.for_run(ctx)
    out, stats = marks(engine.scan(ctx.config.table_url(ANON.name), ANON), cfg, engine)
    url = ctx.config.table_url(DEDUP.name)
    buckets = 1 if engine.distributed else max(1, -(-stats["rows_in"] // BUCKET_ROWS))
    if buckets == 1:
        engine.write(out, url, DEDUP, order_by=[M.message_id])
    else:  # Polars: the marked rows sorted a bucket of ids at a time, merged as they are written
        runs = (engine.sorted_run(engine.in_bucket(out, M.message_id, j, buckets), [M.message_id])
                for j in range(buckets))
        engine.write_runs(url, DEDUP, runs, pl.col(M.message_id))
    ctx.log.info("neardup: %d rows, %d candidates, %d clusters, %d duplicates", stats["rows_in"],
                 stats["candidates"], stats["clusters"], stats["duplicates"])
    return StageResult.from_summary("neardup", stats)
