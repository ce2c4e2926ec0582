"""Shards stage: tokenised examples -> ``OUT/shards/`` (docs/shards.md), one definition for both engines.

Reads ``timeline``, ``pair_examples`` and ``OUT/tokenizer.json``. Every message any
example references is tokenised once. Two layouts (``[shards] layout``):

* ``reference`` (default, schema version 3): the tokenised messages are written once, as the
  token store ``OUT/shards/store/part-*.parquet`` (``schemas.TOKEN_STORE``), and each split's
  rows (``schemas.SHARD_REF``) reference them by store row, with the gap token of each; the
  loader assembles the streams (schemas/assembly.py).
* ``flat`` (schema version 2): each row (``schemas.SHARD``) carries its rendered streams,
  assembled by the same rule (pipelines/core/render.py).

Per split: rows sorted by ``example_id`` then permuted by ``seed`` (splits are cut upstream,
before the shuffle), cut into files of about ``target_file_bytes`` with near-equal token
counts, zstd, row groups of ``row_group_rows``. Each file is written under a temporary name
and renamed; its name carries its content hash, so a rewrite never replaces a file the
previous manifest names. ``manifest.json`` is written last (temp + rename); files no manifest
names are removed after that (store files after every split's manifest). The stage removes
``OUT/shards/_BUILD_COMPLETE.json`` first and writes it again after every split's manifest
(config hash, tokenizer hash, each manifest's sha256): without it the trainer refuses the
shards (docs/shards.md, docs/failure-model.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import os
import posixpath
import tempfile
import time
from typing import NamedTuple

import narwhals as nw
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import engines
from pipelines.core import render, storage
from pipelines.stages import tokenizer as T
from pipelines.core.checks import CheckResult
from pipelines.core.progress import progress
from pipelines.core.settings import ShardsConfig  # the [shards] section, with every section in core/settings
from pipelines.core.results import StageResult
from schemas import EXAMPLES as E
from schemas import SHARD as S
from schemas import SHARD_REF as R
from schemas import SHARD_SCHEMA_VERSION
from schemas import TOKEN_STORE as TS
from schemas.assembly import Messages, Specials, exclusive_cumsum, flat_rows
from schemas.shards import SHARD_REF_SCHEMA_VERSION, resolve, store_key
from schemas.shards import BUILD_RECORD
from schemas import TIMELINE as TL

SPLITS = ("train", "validation", "test")  # always written, empty ones with no shards
MANIFEST = "manifest.json"
STORE = "store"  # OUT/shards/store/: the token store of the reference layout, shared by every split
TOKEN_DTYPE = "int32"
# Repeated ids compress well as dictionaries; token lists do not.
_DICT_COLUMNS = [S.self_id, S.other_id, S.thread_id, S.timeline_id, S.time_kind]
STORE_ROW_GROUP_ROWS = 65_536   # messages per row group of a store file (read whole by the loader)
LAYOUTS = {"flat": (S, SHARD_SCHEMA_VERSION), "reference": (R, SHARD_REF_SCHEMA_VERSION)}


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
                   split: str, layout: str = "flat") -> dict[bytes, bytes]:
    """The key-value metadata every shard file carries (the trainer checks version and hash)."""
    table, version = LAYOUTS[layout]
    meta = dict(table.arrow.metadata or {})
    meta.update({
        b"schema_version": str(version).encode(),
        b"tokenizer_sha256": tokenizer_sha256.encode(),
        b"vocab_size": str(vocab_size).encode(),
        b"token_dtype": TOKEN_DTYPE.encode(),
        b"special_tokens": json.dumps(ids).encode(),
        b"time_kind": time_kind.encode(),
        b"split": split.encode(),
    })
    return meta


def _time_kind(table: pa.Table) -> str:
    return _kind_of(set(table.column(S.time_kind).unique().to_pylist()))


def _kind_of(kinds: set[str]) -> str:
    """A split's time kind from its rows' kinds: the one kind, ``mixed``, or ``wall`` when empty."""
    return sorted(kinds)[0] if len(kinds) == 1 else ("mixed" if kinds else "wall")


def _tokens_of(table: pa.Table) -> int:
    """The tokens a file holds: assembled tokens of example rows, stored tokens of store rows."""
    if S.n_tokens in table.column_names:
        return int(pc.sum(table.column(S.n_tokens)).as_py() or 0)
    return int(pc.sum(pc.list_value_length(table.column(TS.tokens))).as_py() or 0)


def encode_shard(table: pa.Table, index: int, cfg: ShardsConfig, *, row_group_rows: int | None = None,
                 dictionary: list[str] | None = None) -> tuple[str, bytes, dict]:
    """One shard file: (name, Parquet bytes, its manifest entry) for ``table`` (rows with the
    split's metadata), the ``index``-th file of its folder. Same rows and config give the same bytes."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=row_group_rows or cfg.row_group_rows,
                   use_dictionary=_DICT_COLUMNS if dictionary is None else dictionary)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    # The content hash in the name: a rewrite never overwrites a file the old manifest names.
    name = f"part-{index:05d}-{sha[:12]}.parquet"
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    entry = {"path": name, "rows": table.num_rows, "tokens": _tokens_of(table),
             "bytes": len(data), "sha256": sha, "row_groups": [md.row_group(k).num_rows for k in range(md.num_row_groups)]}
    return name, data, entry


def _remove_unnamed(fs, path: str, keep: set[str]) -> None:
    for p in fs.ls(path, detail=False):
        if posixpath.basename(p) not in keep:
            storage._rm(fs, p, recursive=True)


def publish_manifest(fs, path: str, manifest: dict) -> None:
    """Write ``manifest.json`` (last, temp + rename), then remove the files it does not name."""
    _put_bytes(fs, posixpath.join(path, MANIFEST), (json.dumps(manifest, indent=1) + "\n").encode())
    _remove_unnamed(fs, path, {MANIFEST, *(s["path"] for s in manifest["shards"])})


def manifest_of(split: str, tokenizer_sha256: str, ids: dict[str, int], vocab_size: int, time_kind: str,
                rows: int, target_tokens: int, shards: list[dict], store: dict | None = None) -> dict:
    """A split's manifest; ``store`` (the reference layout's token store) makes it schema version 3."""
    doc = {
        "schema_version": SHARD_SCHEMA_VERSION if store is None else SHARD_REF_SCHEMA_VERSION,
        "split": split, "tokenizer_sha256": tokenizer_sha256,
        "vocab_size": vocab_size, "token_dtype": TOKEN_DTYPE, "special_tokens": ids, "time_kind": time_kind,
        "rows": rows, "tokens": sum(s["tokens"] for s in shards), "target_tokens": target_tokens,
        "shards": shards,
    }
    if store is not None:
        doc = {**doc, "layout": "reference", "store": store}
    return doc


def write_split(table: pa.Table, url: str, cfg: ShardsConfig, *, split: str, tokenizer_sha256: str,
                ids: dict[str, int], vocab_size: int, log=None, store: dict | None = None) -> dict:
    """Write ``table`` (already shuffled) as the shard files + manifest of one split folder ``url``.

    ``table`` holds flat rows (``schemas.SHARD``), or reference rows (``schemas.SHARD_REF``) with
    ``store`` the token store's manifest entry (:func:`write_store`). Returns the manifest.
    Guaranteed: the manifest appears last and names only complete files; same table and config
    give byte-identical files; files of an earlier manifest are removed only after the new
    manifest is in place.
    """
    return write_split_rows([table], table.column(S.n_tokens).to_numpy(),
                            int(pc.sum(table.column(S.n_target_tokens)).as_py() or 0), _time_kind(table), url, cfg,
                            split=split, tokenizer_sha256=tokenizer_sha256, ids=ids, vocab_size=vocab_size, log=log,
                            store=store)


def write_split_rows(tables, tokens: np.ndarray, target_tokens: int, time_kind: str, url: str, cfg: ShardsConfig, *,
                     split: str, tokenizer_sha256: str, ids: dict[str, int], vocab_size: int, log=None,
                     store: dict | None = None) -> dict:
    """:func:`write_split` for a split whose rows come as ``tables`` (an iterable, in shard order, read
    as the files need them: one file's rows are held at a time), with ``tokens`` every row's
    ``n_tokens`` (what the files are cut by), ``target_tokens`` their ``n_target_tokens`` summed and
    ``time_kind`` the split's (:func:`_time_kind` of all its rows)."""
    fs, path = storage.fs_and_path(url)
    fs.makedirs(path, exist_ok=True)
    meta = shard_metadata(tokenizer_sha256, ids, vocab_size, time_kind, split,
                          "flat" if store is None else "reference")
    # Both layouts cut at the same rows (the flat layout's size estimate): the loader's units, and
    # so its batches, are the same whichever layout a build wrote.
    est = float(tokens.sum()) * cfg.bytes_per_token
    bounds = cut_points(tokens, math.ceil(est / cfg.target_file_bytes))
    rows = _RowStream(iter(tables))
    shards = []
    with progress(f"write {split} shards", log, total=len(tokens), unit="rows") as p:
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            name, data, entry = encode_shard(rows.take(b - a).replace_schema_metadata(meta), i, cfg)
            _put_bytes(fs, posixpath.join(path, name), data)
            shards.append(entry)
            p.update(b - a, files=i + 1)
    manifest = manifest_of(split, tokenizer_sha256, ids, vocab_size, time_kind, len(tokens), target_tokens,
                           shards, store)
    publish_manifest(fs, path, manifest)
    return manifest


class _RowStream:
    """The rows of a sequence of tables, taken ``n`` at a time, in order; one take is one table
    of a single chunk per column (so a file's bytes do not depend on how its rows arrived)."""

    def __init__(self, tables):
        self._tables, self._held, self._rows = tables, [], 0

    def take(self, n: int) -> pa.Table:
        while self._rows < n:
            t = next(self._tables)
            self._held.append(t)
            self._rows += t.num_rows
        whole = pa.concat_tables(self._held) if len(self._held) > 1 else self._held[0]
        rest = whole.slice(n)
        self._held, self._rows = ([rest] if rest.num_rows else []), rest.num_rows
        return whole.slice(0, n).combine_chunks()


def write_store(table: pa.Table, shards_url: str, cfg: ShardsConfig, *, tokenizer_sha256: str,
                ids: dict[str, int], vocab_size: int, log=None) -> dict:
    """Write the token store (``schemas.TOKEN_STORE`` rows, in store order) as files under
    ``OUT/shards/store/``, cut at about ``target_file_bytes`` by stored tokens.

    Returns the entry every split manifest carries: ``rows``, ``tokens``, ``bytes`` and the
    files (paths relative to a split folder, ``../store/part-…``, with sha256, rows, row groups
    and tokens). Files are named by content hash and the old ones stay until
    :func:`remove_unnamed_store_files` runs after every manifest is in place.
    """
    tokens = pc.list_value_length(table.column(TS.tokens)).to_numpy(zero_copy_only=False)
    return write_store_rows(lambda a, b: table.slice(a, b - a), tokens, shards_url, cfg,
                            tokenizer_sha256=tokenizer_sha256, ids=ids, vocab_size=vocab_size, log=log)


def write_store_rows(rows_of, tokens: np.ndarray, shards_url: str, cfg: ShardsConfig, *, tokenizer_sha256: str,
                     ids: dict[str, int], vocab_size: int, log=None) -> dict:
    """:func:`write_store` of a store whose rows ``a`` to ``b`` are ``rows_of(a, b)`` (made as each
    file needs them: one file's rows are held at a time), with ``tokens`` each row's stored tokens."""
    fs, path = storage.fs_and_path(posixpath.join(shards_url, STORE))
    fs.makedirs(path, exist_ok=True)
    meta = {**(TS.arrow.metadata or {}), b"tokenizer_sha256": tokenizer_sha256.encode(),
            b"vocab_size": str(vocab_size).encode(), b"token_dtype": TOKEN_DTYPE.encode(),
            b"special_tokens": json.dumps(ids).encode()}
    bounds = cut_points(tokens, math.ceil(float(tokens.sum()) * cfg.bytes_per_token / cfg.target_file_bytes))
    files = []
    with progress("write token store", log, total=len(tokens), unit="msgs") as p:
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            name, data, entry = encode_shard(rows_of(a, b).replace_schema_metadata(meta), i, cfg,
                                             row_group_rows=STORE_ROW_GROUP_ROWS, dictionary=[TS.timeline_id])
            _put_bytes(fs, posixpath.join(path, name), data)
            files.append({**entry, "path": f"../{STORE}/{name}"})
            p.update(b - a, files=i + 1)
    return {"rows": len(tokens), "tokens": int(tokens.sum()), "bytes": sum(f["bytes"] for f in files),
            "files": files}


def remove_unnamed_store_files(shards_url: str, store: dict | None) -> None:
    """After every split's manifest is in place: remove the store files ``store`` (the entry the
    manifests carry) does not name; the whole folder when there is none (a flat-layout build)."""
    fs, path = storage.fs_and_path(posixpath.join(shards_url, STORE))
    if not fs.exists(path):
        return
    if store is None:
        storage._rm(fs, path, recursive=True)
    else:
        _remove_unnamed(fs, path, {posixpath.basename(f["path"]) for f in store["files"]})


def _verify_file(fs, p: str, s: dict, tokenizer_sha256: str, bad: list) -> tuple[int, int, pq.ParquetFile | None]:
    """One listed file against its manifest entry; (rows, tokens, the open file) when it exists."""
    rel = s["path"]
    if not fs.exists(p):
        bad.append(f"{rel}: missing")
        return 0, 0, None
    data = fs.cat_file(p)
    if hashlib.sha256(data).hexdigest() != s["sha256"] or len(data) != s["bytes"]:
        bad.append(f"{rel}: sha256 or size differs from the manifest")
        return 0, 0, None
    pf = pq.ParquetFile(pa.BufferReader(data))
    md = pf.metadata
    got_rg = [md.row_group(k).num_rows for k in range(md.num_row_groups)]
    got_tokens = _tokens_of(pf.read(columns=[c for c in (S.n_tokens, TS.tokens) if c in pf.schema_arrow.names]))
    file_sha = (pf.schema_arrow.metadata or {}).get(b"tokenizer_sha256", b"").decode()
    if md.num_rows != s["rows"] or got_rg != s["row_groups"] or got_tokens != s["tokens"]:
        bad.append(f"{rel}: rows/row groups/tokens {md.num_rows}/{got_rg}/{got_tokens} differ "
                   f"from the manifest's {s['rows']}/{s['row_groups']}/{s['tokens']}")
    elif file_sha != tokenizer_sha256:
        bad.append(f"{rel}: tokenizer_sha256 {file_sha} differs from the manifest's")
    return md.num_rows, got_tokens, pf


def verify_manifest(manifest_url: str) -> CheckResult:
    """Check a split's ``manifest.json`` against its files (either layout).

    Every listed shard (and, in the reference layout, every token store file) must exist and
    match its sha256, bytes, rows, row groups, token sum and the manifest's tokenizer hash;
    the totals must add up, and every reference must name a row of the store.
    ``failed_rows`` counts the files (and totals) that do not.
    """
    name = "shard_manifest"
    fs, mpath = storage.fs_and_path(manifest_url)
    if not fs.exists(mpath):
        return CheckResult(name, False, 1, f"{manifest_url}: no manifest")
    man = json.loads(fs.cat_file(mpath))
    bad, rows, tokens, min_ref, max_ref = [], 0, 0, 0, -1
    for s in man["shards"]:
        n, t, pf = _verify_file(fs, resolve(mpath, s["path"]), s, man["tokenizer_sha256"], bad)
        rows, tokens = rows + n, tokens + t
        if pf is not None and "store" in man:
            refs = pf.read(columns=[R.window_msgs, R.own_msgs, R.other_msgs])
            for c in refs.columns:
                flat = pc.list_flatten(c)
                if len(flat):
                    lo_hi = pc.min_max(flat)
                    min_ref, max_ref = min(min_ref, lo_hi["min"].as_py()), max(max_ref, lo_hi["max"].as_py())
    if not bad and (rows != man["rows"] or tokens != man["tokens"]):
        bad.append(f"totals: shards hold {rows} rows / {tokens} tokens, manifest says {man['rows']} / {man['tokens']}")
    n_files = len(man["shards"])
    if "store" in man:
        st, srows, stokens = man["store"], 0, 0
        for s in st["files"]:
            n, t, _ = _verify_file(fs, resolve(mpath, s["path"]), s, man["tokenizer_sha256"], bad)
            srows, stokens = srows + n, stokens + t
        n_files += len(st["files"])
        if not bad and (srows != st["rows"] or stokens != st["tokens"]):
            bad.append(f"store totals: files hold {srows} rows / {stokens} tokens, manifest says "
                       f"{st['rows']} / {st['tokens']}")
        if min_ref < 0:
            bad.append(f"references: an example names store row {min_ref}, the store has {st['rows']} rows")
        if max_ref >= st["rows"]:
            bad.append(f"references: an example names store row {max_ref}, the store has {st['rows']} rows")
    desc = (f"{manifest_url}: {n_files} files exist and match sha256, rows, row groups and tokens"
            if not bad else f"{manifest_url}: " + "; ".join(bad[:3]))
    return CheckResult(name, not bad, len(bad), desc, bad[:10])


# -- the flat view of either layout ---------------------------------------------------------------

_STORES: dict[str, Messages] = {}  # store key -> the store's arrays, read once per process


def read_manifest(manifest_url: str) -> dict:
    fs, path = storage.fs_and_path(manifest_url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{manifest_url}: no manifest.json; build the shards first "
                                f"(`socialcorpus build --config corpus.toml`)")
    return json.loads(fs.cat_file(path))


def read_file(manifest_url: str, entry: dict, **kw) -> pa.Table:
    """One file a manifest lists (a shard or a store file), as it is on storage."""
    fs, path = storage.fs_and_path(resolve(manifest_url, entry["path"]))
    with fs.open(path, "rb") as f:
        return pq.read_table(f, **kw)


def store_of(manifest_url: str, man: dict) -> Messages:
    """The token store a reference-layout manifest names, every file sha256-checked, read once."""
    key = store_key(f["sha256"] for f in man["store"]["files"])
    if key not in _STORES:
        parts = []
        for f in man["store"]["files"]:
            fs, path = storage.fs_and_path(resolve(manifest_url, f["path"]))
            data = fs.cat_file(path)
            if hashlib.sha256(data).hexdigest() != f["sha256"]:
                raise ValueError(f"{manifest_url}: token store file {f['path']}: sha256 differs from the manifest's; "
                                 "rebuild the shards")
            parts.append(pq.read_table(pa.BufferReader(data)))
        table = pa.concat_tables(parts) if parts else TS.arrow.empty_table()
        _STORES[key] = Messages.of_store(table, int(man["special_tokens"][T.MENTION]))
    return _STORES[key]


def as_flat(rows: pa.Table, manifest_url: str, man: dict) -> pa.Table:
    """Rows of a manifest's shard file as flat rows (``schemas.SHARD``): reference rows are
    assembled against the store (schemas/assembly.py); flat rows come back unchanged."""
    if man.get("schema_version") != SHARD_REF_SCHEMA_VERSION:
        return rows
    return S.conform(flat_rows(rows, store_of(manifest_url, man), Specials.of(man["special_tokens"])))


def read_flat(manifest_url: str) -> pa.Table:
    """Every row of a split (either layout) as flat rows, in manifest file order."""
    man = read_manifest(manifest_url)
    parts = [as_flat(read_file(manifest_url, s), manifest_url, man) for s in man["shards"]]
    return pa.concat_tables(parts) if parts else S.arrow.empty_table()


def export_flat(shards_url: str, out_url: str, log=None) -> dict:
    """Write a flat-layout copy (schema version 2) of a build's shards to ``out_url``.

    Every split's rows are assembled from the references and written with the same file
    boundaries and row groups, so the loader serves the copy the same batches; the build
    record is written last, as a build does. Returns {split: manifest}. Works on a flat build
    too (a plain copy through the same path).
    """
    fs, root = storage.fs_and_path(shards_url)
    record = json.loads(fs.cat_file(posixpath.join(root, BUILD_RECORD)))
    remove_build_record(out_url)
    manifests = {}
    for split in record["splits"]:
        src = posixpath.join(shards_url, split, MANIFEST)
        man = read_manifest(src)
        ofs, opath = storage.fs_and_path(posixpath.join(out_url, split))
        ofs.makedirs(opath, exist_ok=True)
        meta = shard_metadata(man["tokenizer_sha256"], man["special_tokens"], man["vocab_size"], man["time_kind"],
                              man["split"])
        files = []
        with progress(f"export {split} shards", log, total=man["rows"], unit="rows") as p:
            for i, s in enumerate(man["shards"]):
                rows = as_flat(read_file(src, s), src, man).replace_schema_metadata(meta)
                rg = s["row_groups"][0] if s["row_groups"] else ShardsConfig().row_group_rows
                name, data, entry = encode_shard(rows, i, ShardsConfig(), row_group_rows=rg)
                _put_bytes(ofs, posixpath.join(opath, name), data)
                files.append(entry)
                p.update(rows.num_rows, files=i + 1)
        flat = manifest_of(split, man["tokenizer_sha256"], man["special_tokens"], man["vocab_size"], man["time_kind"],
                           man["rows"], man["target_tokens"], files)
        publish_manifest(ofs, opath, flat)
        manifests[split] = flat
    write_build_record(out_url, list(record["splits"]), config_hash=record["config_hash"],
                       tokenizer_sha256=record["tokenizer_sha256"], engine=record["engine"])
    return manifests


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
    entries, versions = {}, set()
    for split in splits:
        data = fs.cat_file(posixpath.join(path, split, MANIFEST))
        man = json.loads(data)
        entries[split] = {"manifest": f"{split}/{MANIFEST}", "manifest_sha256": hashlib.sha256(data).hexdigest(),
                          "rows": man["rows"], "tokens": man["tokens"], "shards": len(man["shards"])}
        versions.add(man["schema_version"])
    record = {"record_version": 1, "completed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "engine": engine, "config_hash": config_hash, "tokenizer_sha256": tokenizer_sha256,
              "schema_version": max(versions, default=SHARD_SCHEMA_VERSION), "splits": entries}
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


REF_SEQS = (E.window_seqs, E.own_seqs, E.other_seqs)  # the pair_examples columns that reference messages


def referenced_messages(timeline: nw.LazyFrame, examples: nw.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """The timeline rows any example references, in (timeline_id, seq) order (on the driver).

    ``examples``: a frame of them, or (Polars) the keys they reference, :func:`referenced_keys`."""
    if isinstance(examples, pl.DataFrame):
        keys = nw.from_native(examples.lazy())
    else:
        keys = nw.concat([examples.select(nw.col(E.timeline_id).alias(TL.timeline_id), nw.col(c).alias(TL.seq))
                          .explode(TL.seq) for c in REF_SEQS]).drop_nulls().unique()
    msgs = (timeline.select(TL.timeline_id, TL.seq, TL.message_id, TL.author_id, TL.text, TL.created_at,
                            TL.time_kind)
            .join(keys, on=[TL.timeline_id, TL.seq], how="semi"))
    return engines.to_polars(msgs).sort(TL.timeline_id, TL.seq)


def referenced_keys(timeline: nw.LazyFrame, examples_url: str, rows: int) -> pl.DataFrame:
    """(timeline_id, seq) of every timeline message an example references, unique, found a batch of
    ``rows`` examples at a time: a timeline's seqs are dense from 0 (docs/stages/timeline.md), so
    each is a flag in one byte a message, not a row of every example's exploded references. A seq
    no timeline has is left out (the stage then names the example that references it)."""
    names, _, start, seen = referenced_flags(timeline, examples_url, rows)
    at = np.flatnonzero(seen)
    code = np.searchsorted(start, at, side="right") - 1
    return pl.DataFrame({TL.timeline_id: names.gather(code), TL.seq: at - start[code]},
                        schema={TL.timeline_id: pl.String, TL.seq: pl.Int64})


class RefFlags(NamedTuple):
    """Which timeline messages some example references, a flag a message: ``names`` the timeline
    ids sorted, ``n`` each one's message count, ``start`` its first position, ``seen`` one flag per
    timeline message at its (timeline_id, seq) position."""

    names: pl.Series
    n: np.ndarray
    start: np.ndarray
    seen: np.ndarray


def referenced_flags(timeline: nw.LazyFrame, examples_url: str, rows: int, split: str | None = None) -> RefFlags:
    """What :func:`referenced_keys` finds, as :class:`RefFlags`. ``split``: the examples of that
    split only."""
    counts = engines.to_polars(timeline.group_by(TL.timeline_id).agg(nw.len().alias("_n"))).sort(TL.timeline_id)
    n = counts["_n"].to_numpy().astype(np.int64)
    start = exclusive_cumsum(n)
    lookup = counts.select(TL.timeline_id, pl.int_range(pl.len(), dtype=pl.Int64).alias("_code"))
    seen = np.zeros(int(start[-1]), dtype=bool)
    for df in example_batches(examples_url, rows, [E.timeline_id, *REF_SEQS, *([E.split] if split else [])]):
        if split:
            df = df.filter(pl.col(E.split) == split)
        flat = (pl.concat([df.select(pl.col(E.timeline_id).alias(TL.timeline_id), pl.col(c).alias(TL.seq))
                           .explode(TL.seq) for c in REF_SEQS]).drop_nulls()
                .join(lookup, on=TL.timeline_id, how="left"))
        code = flat["_code"].fill_null(-1).to_numpy()
        seq = flat[TL.seq].to_numpy().astype(np.int64)
        ok = (code >= 0) & (seq >= 0) & (seq < n[np.maximum(code, 0)])
        seen[start[code[ok]] + seq[ok]] = True
    return RefFlags(counts[TL.timeline_id], n, start, seen)


def referenced_rows(timeline_url: str, flags: RefFlags, rows: int, columns=render.TOKENISED_COLUMNS):
    """The timeline rows :func:`referenced_flags` flagged, in (timeline_id, seq) order, read from
    storage ``rows`` at a time (the timeline is stored in that order: docs/stages/timeline.md), as
    frames of ``columns`` (with timeline_id and seq; by default what :func:`render.tokenise_messages`
    reads): the texts of all the referenced messages are never held at once. Raises, naming the
    table, where the stored order is not that."""
    names, n, start, seen = flags
    timelines, last = pl.Enum(names.to_list()), -1
    columns = [TL.timeline_id, TL.seq, *(c for c in columns if c not in (TL.timeline_id, TL.seq))]
    for df in table_batches(timeline_url, TL, rows, columns):
        code = df[TL.timeline_id].cast(timelines).to_physical().to_numpy().astype(np.int64)
        seq = df[TL.seq].to_numpy()
        pos = start[code] + seq
        if len(pos) and (pos[0] <= last or np.any(np.diff(pos) <= 0) or np.any(seq < 0) or np.any(seq >= n[code])):
            raise RuntimeError(f"{timeline_url}: not stored in (timeline_id, seq) order with dense seqs; "
                               f"rebuild it with the timeline stage")
        last = int(pos[-1]) if len(pos) else last
        yield compact_strings(df.filter(pl.Series(seen[pos])))


def compact_strings(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with its string columns copied into buffers of their own. Polars' strings are views:
    a filter keeps the values it drops in memory with the ones it keeps, as long as the result
    lives (the tokenizer stage's sample, a quarter of the 4M month's train messages, held every
    train message's text that way: 1.1 GB). Through Arrow only the kept values are copied."""
    strings = [c for c, t in df.schema.items() if t == pl.String]
    if not strings or not df.height:
        return df
    return df.with_columns(pl.from_arrow(df.select(strings).to_arrow()).get_columns())


def split_batches(mt: render.MessageTokens, tok, examples: pl.DataFrame, cfg: ShardsConfig, dropped: dict[str, int],
                  log=None, split: str = "", layout: str = "flat", rows: np.ndarray | None = None):
    """One split's rows (flat, or references into the store written from ``mt``), a batch of
    ``examples_per_batch`` at a time: the examples at row numbers ``rows`` (default: all of
    ``examples``) sorted by example_id, permuted by ``cfg.seed``. Adds the messages the token
    budgets left out to ``dropped`` (per stream)."""
    # The split's rows in example_id order, then permuted: as row numbers into ``examples``, so
    # each batch is gathered on its own and the split is never copied whole (filtered, sorted, permuted).
    rows = np.arange(examples.height) if rows is None else rows
    order = rows[examples[E.example_id].gather(rows).arg_sort().to_numpy()]
    order = order[np.random.default_rng(cfg.seed).permutation(len(order))]
    rows_of = render.render_examples if layout == "flat" else render.reference_rows
    with progress(f"render {split} examples" if split else "render examples", log, total=len(order),
                  unit="examples") as p:
        for a in range(0, len(order), cfg.examples_per_batch):
            batch = examples[order[a:a + cfg.examples_per_batch]].with_columns(
                pl.col(pl.Categorical).cast(pl.String))  # the ids as strings again (see read_examples)
            t, d = rows_of(mt, tok, batch, max_window_tokens=cfg.max_window_tokens,
                           max_stream_tokens=cfg.max_stream_tokens)
            for k in d:
                dropped[k] += d[k]
            p.update(t.num_rows)
            yield t


def build_split_table(mt: render.MessageTokens, tok, examples: pl.DataFrame, cfg: ShardsConfig, log=None,
                      split: str = "", layout: str = "flat", rows: np.ndarray | None = None
                      ) -> tuple[pa.Table, dict[str, int]]:
    """One split's rows as one table (:func:`split_batches`), and the messages the budgets left out."""
    dropped = {"window": 0, "own": 0, "other": 0}
    parts = list(split_batches(mt, tok, examples, cfg, dropped, log, split, layout, rows))
    empty = (S if layout == "flat" else R).arrow.empty_table()
    return (pa.concat_tables(parts) if parts else empty), dropped


REF_COLUMNS = (R.window_msgs, R.own_msgs, R.other_msgs)
# The pair_examples columns the stage reads (platform, community and target_seq reach no shard).
SHARD_INPUT = tuple(c for c in E.names if c not in (E.platform, E.community, E.target_seq))


# Ids repeated across examples (a split, a timeline, a thread, a user), held as categoricals while
# the examples wait to be rendered (4 bytes a value); each batch gets them back as strings.
_REPEATED = (E.split, E.timeline_id, E.thread_id, E.self_id, E.other_id)


def read_examples(ex_frame: nw.LazyFrame, engine) -> pl.DataFrame:
    """The ``SHARD_INPUT`` columns of every example on the driver, the ``_REPEATED`` ids as categoricals
    (cast as Polars reads them, so the strings are never held whole)."""
    if not engine.distributed:  # a Polars frame: cast as it is read
        return ex_frame.to_native().select(
            [pl.col(c).cast(pl.Categorical) if c in _REPEATED else pl.col(c) for c in SHARD_INPUT]).collect()
    df = engines.to_polars(ex_frame.select(*SHARD_INPUT))
    return df.with_columns(pl.col(c).cast(pl.Categorical) for c in _REPEATED)


def _mark_refs(seen: np.ndarray, table: pa.Table) -> None:
    for c in REF_COLUMNS:
        for chunk in table.column(c).chunks:
            seen[pc.list_flatten(chunk).to_numpy()] = True


def renumber_refs(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table``'s references renumbered into a store of the message rows ``rows`` (sorted, each
    referenced one in it), in the same order."""
    for c in REF_COLUMNS:
        arr = table.column(c).combine_chunks()
        values = np.searchsorted(rows, arr.values.to_numpy(zero_copy_only=False))
        new = pa.ListArray.from_arrays(arr.offsets, pa.array(values, arr.type.value_type), type=arr.type)
        table = table.set_column(table.schema.get_field_index(c), table.schema.field(c), new)
    return table


# -- the reference layout, a bucket of rows at a time --------------------------------------------

ID_PREFIX_HEX = 15     # leading example_id hex digits read as one int64 to sort by (a tie: the whole ids)
BUCKET_ROWS = 250_000  # shard rows per spill file of a split: what a split's write holds at once
_POS = "_pos"          # an example's row in its split's shards
ORDER_BATCH = 250_000  # examples read at a time to find their places (two columns)


def example_batches(url: str, rows: int, columns=None):
    """``pair_examples`` as it is on storage (whichever engine wrote it), ``rows`` at a time, as
    Polars frames of ``columns`` (default: every column) conformed to the schema."""
    return table_batches(url, E, rows, columns)


def table_batches(url: str, table, rows: int, columns=None):
    """The ``table`` at ``url`` as it is on storage (its files in order; whichever engine wrote
    it), ``rows`` at a time, as Polars frames of ``columns`` (default: every column) conformed to
    the schema."""
    fs, _ = storage.fs_and_path(url)
    for f in storage.dataset_files(url):
        with fs.open(f, "rb") as fh:
            for b in pq.ParquetFile(fh).iter_batches(batch_size=rows, columns=list(columns or table.names)):
                t = pa.Table.from_batches([b])
                yield pl.from_arrow(t.cast(pa.schema([table.arrow.field(c) for c in t.column_names])) if columns
                                    else table.conform(t))


def shard_order(url: str, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, list[int]]:
    """Where each example goes, read from ``example_id`` and ``split`` alone: (the splits in write
    order, per example in storage order the index of its split and its row in that split's shards,
    the rows of each split). A split's rows are its examples sorted by ``example_id``, then permuted
    by ``seed`` (:func:`split_batches`' order). The ids are sorted by their first ``ID_PREFIX_HEX``
    hex digits as one integer (lowercase hex of one length sorts as its number): 8 bytes an
    example, not the strings; a tie, or an id that is not such hex, sorts the whole ids instead."""
    names: dict[str, int] = {}
    keys, codes, exact = [], [], True
    for df in example_batches(url, ORDER_BATCH, [E.example_id, E.split]):
        for v in df[E.split].unique().to_list():
            names.setdefault(v, len(names))
        codes.append(df[E.split].replace_strict(names, return_dtype=pl.Int16).to_numpy())
        head = pl.col(E.example_id).str.slice(0, ID_PREFIX_HEX)
        k = df.select(pl.when(pl.col(E.example_id).str.contains(f"^[0-9a-f]{{{ID_PREFIX_HEX}}}"))
                      .then(head.str.to_integer(base=16, strict=False))).to_series()
        exact &= k.null_count() == 0
        keys.append(k.fill_null(-1).to_numpy())
    key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    code = np.concatenate(codes) if codes else np.zeros(0, np.int16)
    splits = [*SPLITS, *sorted(set(names) - set(SPLITS))]
    pos = np.zeros(len(key), np.int64)
    index = np.full(len(key), -1, np.int16)
    counts, ids = [], None
    for i, split in enumerate(splits):
        rows = np.flatnonzero(code == names[split]) if split in names else np.zeros(0, np.int64)
        index[rows] = i
        srt = np.argsort(key[rows], kind="stable")
        k = key[rows][srt]
        if not exact or (len(k) > 1 and (k[1:] == k[:-1]).any()):
            if ids is None:
                ids = pl.concat([df[E.example_id] for df in example_batches(url, ORDER_BATCH, [E.example_id])])
            srt = ids.gather(rows).arg_sort().to_numpy()
        order = rows[srt][np.random.default_rng(seed).permutation(len(rows))]
        pos[order] = np.arange(len(rows))
        counts.append(len(rows))
    return splits, index, pos, counts


class _Buckets:
    """Reference rows spilled per (split, bucket of ``BUCKET_ROWS`` shard rows) to Arrow IPC files
    under ``folder``, each row with its place, so a split's rows come back in shard order a
    bucket at a time."""

    def __init__(self, folder: str, counts: list[int]):
        self.folder, self.counts, self._open = folder, counts, {}

    def _path(self, i: int, b: int) -> str:
        return os.path.join(self.folder, f"{i}-{b}.arrow")

    def add(self, table: pa.Table, index: np.ndarray, pos: np.ndarray) -> None:
        table = table.append_column(_POS, pa.array(pos))
        bucket = index.astype(np.int64) * (1 + max(self.counts, default=0) // BUCKET_ROWS) + pos // BUCKET_ROWS
        order = np.argsort(bucket, kind="stable")
        cuts = np.flatnonzero(np.diff(bucket[order])) + 1
        for part in np.split(order, cuts):
            if not len(part):
                continue
            i, b = int(index[part[0]]), int(pos[part[0]] // BUCKET_ROWS)
            if (i, b) not in self._open:
                f = pa.OSFile(self._path(i, b), "wb")
                self._open[(i, b)] = (f, pa.ipc.new_stream(f, table.schema))
            self._open[(i, b)][1].write_table(table.take(pa.array(part)))

    def close(self) -> None:
        for f, w in self._open.values():
            w.close()
            f.close()

    def rows(self, i: int, used: np.ndarray):
        """Split ``i``'s rows in shard order, a bucket at a time, references renumbered into the
        store of the message rows ``used`` (:func:`renumber_refs`)."""
        n = self.counts[i]
        for b in range(math.ceil(n / BUCKET_ROWS)):
            with pa.OSFile(self._path(i, b), "rb") as f:
                t = pa.ipc.open_stream(f).read_all()
            t = t.take(pc.sort_indices(t.column(_POS)))
            got = t.column(_POS).to_numpy()
            if not np.array_equal(got, np.arange(b * BUCKET_ROWS, min(n, (b + 1) * BUCKET_ROWS))):
                raise RuntimeError(f"shards spill bucket {i}-{b}: rows {got[:3]}… are not the bucket's")
            os.remove(self._path(i, b))
            yield renumber_refs(t.drop_columns([_POS]), used)


def spill_reference_rows(mt: render.MessageTokens, tok, url: str, cfg: ShardsConfig, folder: str, log=None):
    """Reference layout: every example's row, rendered ``examples_per_batch`` examples at a time as
    they are on storage, spilled to :class:`_Buckets` in ``folder``. Returns (the splits, the
    buckets, per split its rows' ``n_tokens`` in shard order, ``n_target_tokens`` summed and time
    kind, the messages the budgets left out, the message rows of ``mt`` any row references)."""
    splits, index, pos, counts = shard_order(url, cfg.seed)
    tokens = [np.zeros(n, np.int32) for n in counts]
    target = [0] * len(splits)
    kinds = [set() for _ in splits]
    dropped = {"window": 0, "own": 0, "other": 0}
    seen = np.zeros(len(mt.body_len), dtype=bool)
    buckets, at = _Buckets(folder, counts), 0
    try:
        with progress("render examples", log, total=len(pos), unit="examples") as p:
            for ex in example_batches(url, cfg.examples_per_batch):
                t, d = render.reference_rows(mt, tok, ex.select(SHARD_INPUT), max_window_tokens=cfg.max_window_tokens,
                                             max_stream_tokens=cfg.max_stream_tokens)
                for k in d:
                    dropped[k] += d[k]
                _mark_refs(seen, t)
                ix, ps = index[at:at + t.num_rows], pos[at:at + t.num_rows]
                n_tok, n_tgt = t.column(R.n_tokens).to_numpy(), t.column(R.n_target_tokens).to_numpy()
                kind = t.column(R.time_kind).to_numpy(zero_copy_only=False)
                for i in np.unique(ix):
                    sel = ix == i
                    tokens[i][ps[sel]] = n_tok[sel]
                    target[i] += int(n_tgt[sel].sum())
                    kinds[i].update(np.unique(kind[sel]).tolist())
                buckets.add(t, ix, ps)
                at += t.num_rows
                p.update(t.num_rows)
    finally:
        buckets.close()
    if at != len(pos):
        raise RuntimeError(f"{url}: read {at} examples, {len(pos)} when ordered; the table changed during the stage")
    return splits, buckets, tokens, target, [_kind_of(k) for k in kinds], dropped, np.flatnonzero(seen)


def run(ctx, engine=None) -> StageResult:
    """Build the token store (reference layout) and every split's shards and manifest from the
    examples and the tokenizer. One definition for both engines: the engine reads the examples
    and selects the referenced messages; tokenising, assembling and writing run on the driver,
    so the files are byte-identical whichever engine ran.

    Returns ``rows_in`` (examples), ``rows_out`` (shard rows; no example is dropped), no drops
    (the figure ``dropped``, empty, is the JSON summary's older name for them), messages left
    out by token budgets or truncated, per-split rows, tokens and shard counts, the store's
    rows, tokens and bytes (reference layout), and the tokens/s of rendering + writing.

    Memory: the examples are read after tokenising (the message texts are gone by then). In the
    reference layout they are read from storage a batch at a time (:func:`spill_reference_rows`:
    what the driver holds of every example is its place, 10 bytes), their rows wait in buckets
    of ``BUCKET_ROWS`` in a local temporary folder while the store is written a file at a time,
    and each split comes back a bucket at a time. The flat layout holds the examples and one
    split's rows.
    """
    cfg = ctx.config.section(ShardsConfig)
    engine = engine or engines.for_run(ctx)
    shards_url = ctx.config.table_url("shards")
    remove_build_record(shards_url)
    tok_url = ctx.config.table_url("tokenizer.json")
    tok = T.load(tok_url)
    tok_sha = T.sha256_of(tok_url)
    ids = T.special_token_ids(tok)
    ex_frame = engine.scan(ctx.config.table_url(E.name), E)
    t0 = time.monotonic()
    tl_frame = engine.scan(ctx.config.table_url(TL.name), TL)
    # The examples' users (for the pseudonym codes) without the examples: those are read after
    # tokenising, so the message texts and the examples are never held together.
    users = [engines.to_polars(ex_frame.select(c).unique()).get_column(c) for c in (E.self_id, E.other_id)]
    if engine.distributed:  # Spark explodes every example's references on its executors
        msgs = referenced_messages(tl_frame, ex_frame)
        mt = render.tokenise_messages(msgs, tok, cfg.max_message_tokens, extra_ids=users, log=ctx.log)
    else:  # Polars: the referenced messages flagged a batch of examples at a time (one byte a
        # message), then read and tokenised a row group at a time, in order
        tl_url = ctx.config.table_url(TL.name)
        flags = referenced_flags(tl_frame, ctx.config.table_url(E.name), cfg.examples_per_batch)
        n_refs = int(flags.seen.sum())
        # the ids' first buffer: a token a byte of every timeline text (one pass over that column;
        # an upper bound, and pages never written are never resident)
        text_bytes = storage.scan(tl_url).select(pl.col(TL.text).str.len_bytes().sum()).collect().item()
        mt = render.tokenise_messages(referenced_rows(tl_url, flags, storage.ROW_GROUP_ROWS), tok,
                                      cfg.max_message_tokens, extra_ids=users, log=ctx.log, total=n_refs,
                                      capacity=render.capacity_for(int(text_bytes or 0), n_refs))
        del flags
    t_tok = time.monotonic() - t0
    n_msgs = len(mt.body_len)
    del users  # the texts are tokens now
    summary = {"rows_in": 0, "rows_out": 0, "dropped": {}, "layout": cfg.layout,
               "messages_tokenised": n_msgs,
               "message_tokens": int(mt.offsets[-1]), "messages_truncated": mt.truncated,
               "messages_over_budget": {"window": 0, "own": 0, "other": 0}, "splits": {}}
    total_tokens = 0
    t1 = time.monotonic()
    store = None
    vocab = tok.get_vocab_size()
    with tempfile.TemporaryDirectory(prefix="socialcorpus-shards-") as spill:
        if cfg.layout == "reference":
            # Every row rendered from the examples as they are on storage, a batch at a time, into
            # buckets of shard rows on local disk; only the messages the rows reference once the
            # budgets have cut the streams go to the store, renumbered; then each split comes back
            # from its buckets in shard order, one file's rows at a time.
            splits, buckets, tokens, target, kinds, over, used = spill_reference_rows(
                mt, tok, ctx.config.table_url(E.name), cfg, spill, ctx.log)
            store = write_store_rows(lambda a, b: render.store_table(mt, used[a:b]), mt.body_len[used], shards_url,
                                     cfg, tokenizer_sha256=tok_sha, ids=ids, vocab_size=vocab, log=ctx.log)
            del mt
            summary["store"] = {"rows": store["rows"], "tokens": store["tokens"], "bytes": store["bytes"],
                                "files": len(store["files"])}
            summary["rows_in"] = sum(len(t) for t in tokens)
            summary["messages_over_budget"] = over
            each = ((split, write_split_rows(buckets.rows(i, used), tokens[i], target[i], kinds[i],
                                             ctx.config.table_url("shards", split), cfg, split=split,
                                             tokenizer_sha256=tok_sha, ids=ids, vocab_size=vocab, log=ctx.log,
                                             store=store))
                    for i, split in enumerate(splits))
        else:
            examples = read_examples(ex_frame, engine)
            summary["rows_in"] = examples.height
            splits = [*SPLITS, *sorted(set(examples[E.split].unique().to_list()) - set(SPLITS))]
            split_of = examples[E.split]

            def flat(split):
                table, dropped = build_split_table(mt, tok, examples, cfg, ctx.log, split, cfg.layout,
                                                   rows=np.flatnonzero((split_of == split).to_numpy()))
                summary["messages_over_budget"] = {k: summary["messages_over_budget"][k] + dropped[k]
                                                   for k in dropped}
                return write_split(table, ctx.config.table_url("shards", split), cfg, split=split,
                                   tokenizer_sha256=tok_sha, ids=ids, vocab_size=vocab, log=ctx.log)

            each = ((split, flat(split)) for split in splits)   # one split in memory at a time
        shard_bytes = 0
        for split, man in each:
            summary["rows_out"] += man["rows"]
            summary["splits"][split] = {"rows": man["rows"], "tokens": man["tokens"], "shards": len(man["shards"])}
            total_tokens += man["tokens"]
            shard_bytes += sum(s["bytes"] for s in man["shards"])
    remove_unnamed_store_files(shards_url, store)
    write_build_record(shards_url, splits, config_hash=config_hash(ctx.config),
                       tokenizer_sha256=tok_sha, engine=engine.name)
    t_shards = time.monotonic() - t1
    summary["shard_tokens"] = total_tokens
    # what is on disk: the tokens stored (the store's, or every flat row's) and the bytes
    summary["stored_tokens"] = store["tokens"] if store is not None else total_tokens
    summary["bytes_on_disk"] = shard_bytes + (store["bytes"] if store is not None else 0)
    summary["tokenise_seconds"] = round(t_tok, 3)
    summary["assemble_write_seconds"] = round(t_shards, 3)
    summary["shard_tokens_per_s"] = round(total_tokens / max(t_tok + t_shards, 1e-9))
    ctx.log.info("shards (%s layout): %d rows, %d tokens, %d stored, %.0f tokens/s", cfg.layout, summary["rows_out"],
                 total_tokens, summary["stored_tokens"], summary["shard_tokens_per_s"])
    return StageResult.from_summary("shards", summary)
