"""Shards stage: tokenised examples -> ``OUT/shards/<split>/part-*.parquet`` + ``manifest.json``.

Reads ``timeline``, ``pair_examples`` and ``OUT/tokenizer.json``. Every message any
example references is tokenised once; rows (``schemas.SHARD``) are assembled by gathering
(pipelines/core/render.py). Per split: rows sorted by ``example_id`` then permuted by ``seed``
(splits are cut upstream, before the shuffle), cut into files of about
``target_file_bytes`` with near-equal token counts, zstd, row groups of ``row_group_rows``.
Each file is written under a temporary name and renamed; its name carries its content
hash, so a rewrite never replaces a file the previous manifest names. ``manifest.json``
is written last (temp + rename); files no manifest names are removed after that. The stage
removes ``OUT/shards/_BUILD_COMPLETE.json`` first and writes it again after every split's
manifest (config hash, tokenizer hash, each manifest's sha256): without it the trainer
refuses the shards (docs/shards.md, docs/failure-model.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import posixpath
import time

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core import render, storage
from pipelines.stages import tokenizer as T
from pipelines.core.checks import CheckResult
from pipelines.core.progress import progress
from pipelines.core.settings import ShardsConfig  # the [shards] section, with every section in core/settings
from pipelines.core.results import StageResult
from schemas import EXAMPLES as E
from schemas import SHARD as S
from schemas import SHARD_SCHEMA_VERSION
from schemas.shards import BUILD_RECORD
from schemas import TIMELINE as TL

SPLITS = ("train", "validation", "test")  # always written, empty ones with no shards
MANIFEST = "manifest.json"
TOKEN_DTYPE = "int32"
# Repeated ids compress well as dictionaries; token lists do not.
_DICT_COLUMNS = [S.self_id, S.other_id, S.thread_id, S.timeline_id, S.time_kind]


# Module-level name so a test can simulate a crash mid-write by replacing it.
_put_bytes = storage.put_bytes


def cut_points(tokens: np.ndarray, n_files: int) -> list[int]:
    """Row boundaries ``[0, …, rows]`` giving ``n_files`` contiguous slices of near-equal token sums.

    Each boundary is the first row where the running token sum reaches k/n of the total,
    so every file is within one row's tokens of the mean.
    """
    rows = len(tokens)
    if rows == 0:
        return [0]
    n_files = max(1, min(n_files, rows))
    cum = np.cumsum(tokens, dtype=np.int64)
    goals = cum[-1] * np.arange(1, n_files) / n_files
    inner = np.searchsorted(cum, goals, side="left") + 1
    return sorted({0, rows, *(int(b) for b in inner if 0 < b < rows)})


def shard_metadata(tokenizer_sha256: str, ids: dict[str, int], vocab_size: int, time_kind: str,
                   split: str) -> dict[bytes, bytes]:
    """The key-value metadata every shard file carries (the trainer checks version and hash)."""
    meta = dict(S.arrow.metadata or {})
    meta.update({
        b"schema_version": str(SHARD_SCHEMA_VERSION).encode(),
        b"tokenizer_sha256": tokenizer_sha256.encode(),
        b"vocab_size": str(vocab_size).encode(),
        b"token_dtype": TOKEN_DTYPE.encode(),
        b"special_tokens": json.dumps(ids).encode(),
        b"time_kind": time_kind.encode(),
        b"split": split.encode(),
    })
    return meta


def _time_kind(table: pa.Table) -> str:
    kinds = sorted(set(table.column(S.time_kind).unique().to_pylist()))
    return kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "wall")


def encode_shard(table: pa.Table, index: int, cfg: ShardsConfig) -> tuple[str, bytes, dict]:
    """One shard file: (name, Parquet bytes, its manifest entry) for ``table`` (rows with the
    split's metadata), the ``index``-th file of its split. Same rows and config give the same bytes."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=cfg.row_group_rows, use_dictionary=_DICT_COLUMNS)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    # The content hash in the name: a rewrite never overwrites a file the old manifest names.
    name = f"part-{index:05d}-{sha[:12]}.parquet"
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    entry = {"path": name, "rows": table.num_rows, "tokens": int(pc.sum(table.column(S.n_tokens)).as_py() or 0),
             "bytes": len(data), "sha256": sha, "row_groups": [md.row_group(k).num_rows for k in range(md.num_row_groups)]}
    return name, data, entry


def publish_manifest(fs, path: str, manifest: dict) -> None:
    """Write ``manifest.json`` (last, temp + rename), then remove the files it does not name."""
    _put_bytes(fs, posixpath.join(path, MANIFEST), (json.dumps(manifest, indent=1) + "\n").encode())
    keep = {MANIFEST, *(s["path"] for s in manifest["shards"])}
    for p in fs.ls(path, detail=False):
        if posixpath.basename(p) not in keep:
            storage._rm(fs, p, recursive=True)


def manifest_of(split: str, tokenizer_sha256: str, ids: dict[str, int], vocab_size: int, time_kind: str,
                rows: int, target_tokens: int, shards: list[dict]) -> dict:
    return {
        "schema_version": SHARD_SCHEMA_VERSION, "split": split, "tokenizer_sha256": tokenizer_sha256,
        "vocab_size": vocab_size, "token_dtype": TOKEN_DTYPE, "special_tokens": ids, "time_kind": time_kind,
        "rows": rows, "tokens": sum(s["tokens"] for s in shards), "target_tokens": target_tokens,
        "shards": shards,
    }


def write_split(table: pa.Table, url: str, cfg: ShardsConfig, *, split: str, tokenizer_sha256: str,
                ids: dict[str, int], vocab_size: int, log=None) -> dict:
    """Write ``table`` (already shuffled) as the shard files + manifest of one split folder ``url``.

    Returns the manifest. Guaranteed: the manifest appears last and names only complete
    files; same table and config give byte-identical files; files of an earlier manifest
    are removed only after the new manifest is in place.
    """
    fs, path = storage.fs_and_path(url)
    fs.makedirs(path, exist_ok=True)
    time_kind = _time_kind(table)
    meta = shard_metadata(tokenizer_sha256, ids, vocab_size, time_kind, split)
    table = table.replace_schema_metadata(meta)
    tokens = table.column(S.n_tokens).to_numpy()
    est = float(tokens.sum()) * cfg.bytes_per_token
    bounds = cut_points(tokens, math.ceil(est / cfg.target_file_bytes))
    shards = []
    with progress(f"write {split} shards", log, total=table.num_rows, unit="rows") as p:
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            name, data, entry = encode_shard(table.slice(a, b - a), i, cfg)
            _put_bytes(fs, posixpath.join(path, name), data)
            shards.append(entry)
            p.update(b - a, files=i + 1)
    manifest = manifest_of(split, tokenizer_sha256, ids, vocab_size, time_kind, table.num_rows,
                           int(pc.sum(table.column(S.n_target_tokens)).as_py() or 0), shards)
    publish_manifest(fs, path, manifest)
    return manifest


def verify_manifest(manifest_url: str) -> CheckResult:
    """Check a split's ``manifest.json`` against its files.

    Every listed shard must exist and match its sha256, bytes, rows, row groups, token sum
    and the manifest's tokenizer hash; the totals must add up. ``failed_rows`` counts the
    shards (and totals) that do not.
    """
    name = "shard_manifest"
    fs, mpath = storage.fs_and_path(manifest_url)
    if not fs.exists(mpath):
        return CheckResult(name, False, 1, f"{manifest_url}: no manifest")
    man = json.loads(fs.cat_file(mpath))
    folder = posixpath.dirname(mpath)
    bad, rows, tokens = [], 0, 0
    for s in man["shards"]:
        p = posixpath.join(folder, s["path"])
        if not fs.exists(p):
            bad.append(f"{s['path']}: missing")
            continue
        data = fs.cat_file(p)
        if hashlib.sha256(data).hexdigest() != s["sha256"] or len(data) != s["bytes"]:
            bad.append(f"{s['path']}: sha256 or size differs from the manifest")
            continue
        pf = pq.ParquetFile(pa.BufferReader(data))
        md = pf.metadata
        got_rg = [md.row_group(k).num_rows for k in range(md.num_row_groups)]
        got_tokens = int(pc.sum(pf.read(columns=[S.n_tokens]).column(0)).as_py() or 0)
        file_sha = (pf.schema_arrow.metadata or {}).get(b"tokenizer_sha256", b"").decode()
        if md.num_rows != s["rows"] or got_rg != s["row_groups"] or got_tokens != s["tokens"]:
            bad.append(f"{s['path']}: rows/row groups/tokens {md.num_rows}/{got_rg}/{got_tokens} differ "
                       f"from the manifest's {s['rows']}/{s['row_groups']}/{s['tokens']}")
        elif file_sha != man["tokenizer_sha256"]:
            bad.append(f"{s['path']}: tokenizer_sha256 {file_sha} differs from the manifest's")
        rows += md.num_rows
        tokens += got_tokens
    if not bad and (rows != man["rows"] or tokens != man["tokens"]):
        bad.append(f"totals: shards hold {rows} rows / {tokens} tokens, manifest says {man['rows']} / {man['tokens']}")
    desc = (f"{manifest_url}: {len(man['shards'])} shards exist and match sha256, rows, row groups and tokens"
            if not bad else f"{manifest_url}: " + "; ".join(bad[:3]))
    return CheckResult(name, not bad, len(bad), desc, bad[:10])


# -- the build-complete record ---------------------------------------------------------------

def config_hash(config) -> str:
    """sha256 of what decides a build's content: the sources and every stage section's
    resolved settings (defaults included). Spark tuning and the Dagster schedule are left
    out (they do not change the output), and so is any secret."""
    doc = {"sources": [[s.name, s.format, list(s.paths)] for s in config.sources],
           "sections": config.content_settings()}  # pipelines/core/settings.py: content_settings
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def remove_build_record(shards_url: str) -> None:
    """First step of a shards write: from here until :func:`write_build_record` the build is
    incomplete, and the trainer refuses its manifests."""
    fs, path = storage.fs_and_path(shards_url)
    rec = posixpath.join(path, BUILD_RECORD)
    if fs.exists(rec):
        storage._rm(fs, rec)


def write_build_record(shards_url: str, splits, *, config_hash: str, tokenizer_sha256: str, engine: str) -> dict:
    """Last step of a shards write: ``OUT/shards/_BUILD_COMPLETE.json`` naming each split's
    manifest with the sha256 of its bytes as they are on storage now. Returns the record."""
    fs, path = storage.fs_and_path(shards_url)
    entries = {}
    for split in splits:
        data = fs.cat_file(posixpath.join(path, split, MANIFEST))
        man = json.loads(data)
        entries[split] = {"manifest": f"{split}/{MANIFEST}", "manifest_sha256": hashlib.sha256(data).hexdigest(),
                          "rows": man["rows"], "tokens": man["tokens"], "shards": len(man["shards"])}
    record = {"record_version": 1, "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "engine": engine, "config_hash": config_hash, "tokenizer_sha256": tokenizer_sha256,
              "schema_version": SHARD_SCHEMA_VERSION, "splits": entries}
    _put_bytes(fs, posixpath.join(path, BUILD_RECORD), (json.dumps(record, indent=1) + "\n").encode())
    return record


def verify_build_record(shards_url: str) -> CheckResult:
    """The build record exists and every split it lists has a manifest with that sha256."""
    name = "shard_build_complete"
    fs, path = storage.fs_and_path(shards_url)
    rec = posixpath.join(path, BUILD_RECORD)
    if not fs.exists(rec):
        return CheckResult(name, False, 1, f"{shards_url}: no {BUILD_RECORD}: the last shards build did not finish")
    record = json.loads(fs.cat_file(rec))
    bad = []
    for split, e in record["splits"].items():
        mp = posixpath.join(path, e["manifest"])
        if not fs.exists(mp):
            bad.append(f"{e['manifest']}: missing")
        elif hashlib.sha256(fs.cat_file(mp)).hexdigest() != e["manifest_sha256"]:
            bad.append(f"{e['manifest']}: sha256 differs from the build record's")
    desc = (f"{shards_url}: build complete, {len(record['splits'])} manifests match the record" if not bad
            else f"{shards_url}: " + "; ".join(bad[:3]))
    return CheckResult(name, not bad, len(bad), desc, bad[:10])


def referenced_messages(timeline: pl.LazyFrame, examples: pl.DataFrame) -> pl.DataFrame:
    """The timeline rows any example references, in (timeline_id, seq) order."""
    keys = pl.concat([examples.lazy().select(pl.col(E.timeline_id).alias(TL.timeline_id),
                                             pl.col(c).alias(TL.seq)).explode(TL.seq)
                      for c in (E.window_seqs, E.own_seqs, E.other_seqs)]).drop_nulls().unique()
    return (timeline.select(TL.timeline_id, TL.seq, TL.message_id, TL.author_id, TL.text, TL.created_at,
                            TL.time_kind)
            .join(keys, on=[TL.timeline_id, TL.seq], how="semi")
            .sort(TL.timeline_id, TL.seq).collect())


def build_split_table(mt: render.MessageTokens, tok, examples: pl.DataFrame, cfg: ShardsConfig, log=None,
                      split: str = "") -> tuple[pa.Table, dict[str, int]]:
    """One split's rows: sorted by example_id, permuted by ``cfg.seed``, rendered in batches."""
    ex = examples.sort(E.example_id)
    perm = np.random.default_rng(cfg.seed).permutation(ex.height)
    ex = ex[perm]
    parts, dropped = [], {"window": 0, "own": 0, "other": 0}
    with progress(f"render {split} examples" if split else "render examples", log, total=ex.height, unit="examples") as p:
        for a in range(0, ex.height, cfg.examples_per_batch):
            t, d = render.render_examples(mt, tok, ex.slice(a, cfg.examples_per_batch),
                                          max_window_tokens=cfg.max_window_tokens,
                                          max_stream_tokens=cfg.max_stream_tokens)
            parts.append(t)
            dropped = {k: dropped[k] + d[k] for k in dropped}
            p.update(t.num_rows)
    table = pa.concat_tables(parts) if parts else S.arrow.empty_table()
    return table, dropped


def run(ctx) -> StageResult:
    """Build every split's shards and manifest from the examples and the tokenizer.

    Returns ``rows_in`` (examples), ``rows_out`` (shard rows; no example is dropped), no drops
    (the figure ``dropped``, empty, is the JSON summary's older name for them), messages left out by token budgets or truncated, per-split rows,
    tokens and shard counts, and the tokens/s of rendering + writing.
    """
    cfg = ctx.config.section(ShardsConfig)
    remove_build_record(ctx.config.table_url("shards"))
    tok_url = ctx.config.table_url("tokenizer.json")
    tok = T.load(tok_url)
    tok_sha = T.sha256_of(tok_url)
    ids = T.special_token_ids(tok)
    examples = storage.read(ctx.config.table_url(E.name))
    t0 = time.monotonic()
    msgs = referenced_messages(storage.scan(ctx.config.table_url(TL.name)), examples)
    mt = render.tokenise_messages(msgs, tok, cfg.max_message_tokens,
                                  extra_ids=[examples[E.self_id], examples[E.other_id]], log=ctx.log)
    t_tok = time.monotonic() - t0
    splits = [*SPLITS, *sorted(set(examples[E.split].unique().to_list()) - set(SPLITS))]
    summary = {"rows_in": examples.height, "rows_out": 0, "dropped": {}, "messages_tokenised": msgs.height,
               "message_tokens": int(mt.offsets[-1]), "messages_truncated": mt.truncated,
               "messages_over_budget": {"window": 0, "own": 0, "other": 0}, "splits": {}}
    total_tokens = 0
    t1 = time.monotonic()
    for split in splits:
        table, dropped = build_split_table(mt, tok, examples.filter(pl.col(E.split) == split), cfg, ctx.log, split)
        man = write_split(table, ctx.config.table_url("shards", split), cfg, split=split,
                          tokenizer_sha256=tok_sha, ids=ids, vocab_size=tok.get_vocab_size(), log=ctx.log)
        summary["rows_out"] += man["rows"]
        summary["messages_over_budget"] = {k: summary["messages_over_budget"][k] + dropped[k] for k in dropped}
        summary["splits"][split] = {"rows": man["rows"], "tokens": man["tokens"], "shards": len(man["shards"])}
        total_tokens += man["tokens"]
    write_build_record(ctx.config.table_url("shards"), splits, config_hash=config_hash(ctx.config),
                       tokenizer_sha256=tok_sha, engine="polars")
    t_shards = time.monotonic() - t1
    summary["shard_tokens"] = total_tokens
    summary["tokenise_seconds"] = round(t_tok, 3)
    summary["assemble_write_seconds"] = round(t_shards, 3)
    summary["shard_tokens_per_s"] = round(total_tokens / max(t_tok + t_shards, 1e-9))
    ctx.log.info("shards: %d rows, %d tokens, %.0f tokens/s", summary["rows_out"], total_tokens,
                 summary["shard_tokens_per_s"])
    return StageResult.from_summary("shards", summary)
