"""The shard loader: manifest -> verified shards -> a deterministic stream of collated batches.

Order is a pure function of (manifest, seed, epoch, world size, workers):
1. every (file, row group) pair is a unit; units are permuted by (seed, epoch);
2. units are dealt round-robin to slots, one slot per (rank, worker);
3. each slot reads its units in order, in blocks of ``shuffle_block`` units whose rows are
   permuted together by (seed, epoch, slot, block);
4. every slot yields the same number ``S`` of full batches (the remainder is dropped), so every
   rank runs ``workers * S`` steps per epoch.

Batch ``j`` of a rank is batch ``j // workers`` of the rank's slot ``j % workers``, whatever
DataLoader worker produces it. Resuming at consumed-batch count ``c`` makes worker ``w`` serve
slot ``(c + w) % workers`` from batch ``(c + w) // workers``: the DataLoader's round robin then
yields batches ``c, c+1, ...`` exactly as an uninterrupted run would. No shuffle buffer, so
nothing is lost on restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas import SHARD as S
from schemas import SHARD_REF as R
from schemas import TOKEN_STORE as TS
from schemas.assembly import Messages, Specials, exclusive_cumsum, flat_rows
from schemas.shards import BUILD_RECORD, MENTION, PREFIX, READABLE_VERSIONS, ROLE_OTHER, ROLE_SELF, ROLE_THIRD
from schemas.shards import SHARD_REF_SCHEMA_VERSION, SUFFIX
from schemas.shards import resolve
from schemas.shards import store_key as schemas_store_key

CACHE = os.environ.get("SOCIALCORPUS_SHARD_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "socialcorpus", "shards"))
COLUMNS = [S.self_id, S.other_id, S.target_message_id, S.target_labels, S.window_tokens, S.window_roles,
           S.window_loss_mask, S.own_tokens, S.own_msg_offsets, S.other_tokens, S.other_msg_offsets,
           S.own_msg_roles, S.other_msg_roles, S.n_target_tokens, S.target_bytes, S.weight]
# The reference layout (schema version 3): what the loader reads, and the flat columns it assembles.
REF_COLUMNS = [R.self_id, R.other_id, R.target_message_id, R.target_labels, R.self_code, R.other_code,
               R.window_msgs, R.window_gaps, R.own_msgs, R.own_gaps, R.other_msgs, R.other_gaps,
               R.n_target_tokens, R.target_bytes, R.weight]


@dataclass(frozen=True)
class Shard:
    url: str
    rows: int
    sha256: str
    row_groups: tuple[int, ...]


@dataclass(frozen=True)
class Manifest:
    url: str
    split: str
    schema_version: int
    tokenizer_sha256: str
    vocab_size: int
    special_tokens: dict
    time_kind: str
    rows: int
    shards: tuple[Shard, ...]
    store: tuple[Shard, ...] = ()   # the token store's files (reference layout), in store order
    store_rows: int = 0
    store_tokens: int = 0

    @property
    def pad_id(self) -> int:
        return int(self.special_tokens["<pad>"])

    @property
    def layout(self) -> str:
        return "reference" if self.schema_version == SHARD_REF_SCHEMA_VERSION else "flat"

    def identity(self) -> dict:
        """What a checkpoint records and later shards must match."""
        return {"schema_version": self.schema_version, "tokenizer_sha256": self.tokenizer_sha256,
                "vocab_size": self.vocab_size}


def _shard(manifest_url: str, s: dict) -> Shard:
    return Shard(resolve(manifest_url, s["path"]), int(s["rows"]), s["sha256"], tuple(int(n) for n in s["row_groups"]))


def load_manifest(url: str) -> Manifest:
    """Read and check a split's ``manifest.json`` (a path or fsspec URL).

    Refuses a manifest of an unfinished build: ``OUT/shards/_BUILD_COMPLETE.json`` (one folder
    up) must exist and list this manifest's sha256 (see :func:`check_build_complete`)."""
    with fsspec.open(url, "rb") as f:
        raw = f.read()
    doc = json.loads(raw)
    if doc.get("schema_version") not in READABLE_VERSIONS:
        raise ValueError(f"{url}: shard schema version {doc.get('schema_version')!r}, this trainer reads "
                         f"{' and '.join(map(str, READABLE_VERSIONS))}; rebuild the shards with this version "
                         "of socialcorpus")
    for key in ("tokenizer_sha256", "vocab_size", "special_tokens", "shards"):
        if key not in doc:
            raise ValueError(f"{url}: manifest lacks {key!r}; rebuild the shards")
    if "<pad>" not in doc["special_tokens"]:
        raise ValueError(f"{url}: special_tokens has no '<pad>'")
    check_build_complete(url, doc.get("split", "?"), hashlib.sha256(raw).hexdigest())
    shards = tuple(_shard(url, s) for s in doc["shards"])
    store = doc.get("store") or {}
    if doc["schema_version"] == SHARD_REF_SCHEMA_VERSION and not store:
        raise ValueError(f"{url}: a schema version {SHARD_REF_SCHEMA_VERSION} manifest without its token store; "
                         "rebuild the shards")
    store_files = tuple(_shard(url, s) for s in store.get("files", ()))
    for s in (*shards, *store_files):
        if sum(s.row_groups) != s.rows:
            raise ValueError(f"{url}: shard {s.url}: row groups sum to {sum(s.row_groups)}, not rows={s.rows}")
    return Manifest(url, doc.get("split", "?"), doc["schema_version"], doc["tokenizer_sha256"], int(doc["vocab_size"]),
                    dict(doc["special_tokens"]), doc.get("time_kind", "?"), int(doc.get("rows", 0)), shards,
                    store_files, int(store.get("rows", 0)), int(store.get("tokens", 0)))


def check_build_complete(url: str, split: str, manifest_sha256: str) -> None:
    """Refuse a manifest whose build did not finish, or that is not the one its build wrote.

    A kill during shard writing can leave the train manifest in place with the other splits
    missing or from an older build; the shards stage writes the build record only after the
    last manifest, so its absence (or a different sha256) is the sign."""
    root = url.rsplit("/", 2)[0] if url.count("/") >= 2 else "."
    rec_url = f"{root}/{BUILD_RECORD}"
    fs, rec_path = fsspec.core.url_to_fs(rec_url)
    if not fs.exists(rec_path):
        raise ValueError(f"{url}: the build that wrote these shards did not finish: {rec_url} is missing (the "
                         "build was killed, failed, or is still running, so other splits may be missing or from "
                         "another build). Run the build again and train on the shards it completes.")
    record = json.loads(fs.cat_file(rec_path))
    listed = record.get("splits", {}).get(split, {}).get("manifest_sha256")
    if listed != manifest_sha256:
        raise ValueError(f"{url}: this manifest (sha256 {manifest_sha256[:12]}…) is not the one the completed build "
                         f"recorded for split {split!r} in {rec_url} ({(listed or 'none')[:12]}…): it was changed or "
                         "rewritten after that build. Rebuild the shards, or train on the manifest the build wrote.")


def check_same_data_identity(manifest: Manifest, recorded: dict) -> None:
    """Refuse shards made with another schema version or tokenizer than ``recorded`` (a checkpoint's).

    Versions 2 (flat) and 3 (reference) give the same batches for the same examples, so either
    may follow the other."""
    for key, value in manifest.identity().items():
        if key == "schema_version" and value in READABLE_VERSIONS and recorded.get(key) in READABLE_VERSIONS:
            continue
        if recorded.get(key) != value:
            raise ValueError(f"{manifest.url}: {key} is {value!r} but the run was trained with "
                             f"{recorded.get(key)!r}; use shards built with the run's tokenizer")


# -- shards on disk -------------------------------------------------------------------------

_VERIFIED: set[tuple[str, str]] = set()  # (local path, sha256) checked in this process


def _sha256(fs, path) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def local_shard(shard: Shard) -> str:
    """A local path to ``shard``, sha256-verified on first use in this process.

    Remote URLs are downloaded once into ``CACHE`` (temp name, then rename, so a crash never
    leaves a partial file under the final name)."""
    fs, path = fsspec.core.url_to_fs(shard.url)
    if "file" in fs.protocol or "local" in fs.protocol:
        local = path
    else:
        local = os.path.join(CACHE, f"{shard.sha256}.parquet")
        if not os.path.exists(local):
            os.makedirs(CACHE, exist_ok=True)
            tmp = f"{local}.{uuid.uuid4().hex}.tmp"
            fs.get(path, tmp)
            got = _sha256(fsspec.filesystem("file"), tmp)
            if got != shard.sha256:
                os.remove(tmp)
                raise ValueError(f"{shard.url}: sha256 {got} does not match the manifest's {shard.sha256}; "
                                 "the shard changed after the manifest was written: rebuild the shards")
            os.replace(tmp, local)
            _VERIFIED.add((local, shard.sha256))
    if (local, shard.sha256) not in _VERIFIED:
        got = _sha256(fsspec.filesystem("file"), local)
        if got != shard.sha256:
            raise ValueError(f"{shard.url}: sha256 {got} does not match the manifest's {shard.sha256}; "
                             "the shard changed after the manifest was written: rebuild the shards")
        meta = pq.read_schema(local).metadata or {}
        version = meta.get(b"schema_version")
        if version is not None and int(version) not in READABLE_VERSIONS:
            raise ValueError(f"{shard.url}: file schema version {int(version)}, expected one of {READABLE_VERSIONS}")
        _VERIFIED.add((local, shard.sha256))
    return local


# -- the token store (reference layout) -------------------------------------------------------

_STORE_ARRAYS = ("offsets", "ids", "body_len", "author", "body_bytes", "time", "mention_pos", "mention_codes")


def store_key(manifest: Manifest) -> str:
    return schemas_store_key(s.sha256 for s in manifest.store)


def prepare_store(manifest: Manifest) -> str:
    """The local folder of the manifest's token store as flat numpy arrays (``.npy``, memory-mapped
    by :func:`open_store`), made once per machine from the store files (each sha256-verified as a
    shard is) under ``CACHE/store-<key>/``: written to a temporary folder and renamed, so a crash
    never leaves a partial store under the final name. Memory stays at one store file."""
    final = os.path.join(CACHE, f"store-{store_key(manifest)}")
    if os.path.isdir(final):
        return final
    os.makedirs(CACHE, exist_ok=True)
    tmp = f"{final}.{uuid.uuid4().hex}.tmp"
    os.makedirs(tmp)
    try:
        _write_store(manifest, tmp)
    except BaseException:                # a refused file or a crash: no partial folder is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, final)
    except OSError:                      # another process made it first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_store(manifest: Manifest, tmp: str) -> None:
    """The store's arrays, written into the folder ``tmp``."""
    n, total = manifest.store_rows, manifest.store_tokens
    out = {k: np.lib.format.open_memmap(os.path.join(tmp, f"{k}.npy"), mode="w+", dtype=dt, shape=(shape,))
           for k, dt, shape in (("offsets", np.int64, n + 1), ("ids", np.int32, total), ("body_len", np.int32, n),
                                ("author", np.int32, n), ("body_bytes", np.int32, n), ("time", np.int64, n))}
    mention_id = int(manifest.special_tokens[MENTION])
    row, tok, pos, codes = 0, 0, [], []
    out["offsets"][0] = 0
    for shard in manifest.store:
        table = pq.read_table(local_shard(shard), columns=[TS.tokens, TS.mention_codes, TS.author_code,
                                                           TS.body_bytes, TS.time])
        msgs = Messages.of_store(table, mention_id, with_message_ids=False)
        k, t = table.num_rows, int(msgs.offsets[-1])
        if row + k > n or tok + t > total:
            raise ValueError(f"{manifest.url}: the token store's files hold more rows or tokens than its manifest says")
        out["offsets"][row + 1: row + k + 1] = msgs.offsets[1:] + tok
        out["ids"][tok: tok + t] = msgs.ids
        out["body_len"][row: row + k] = msgs.body_len
        out["author"][row: row + k] = msgs.author
        out["body_bytes"][row: row + k] = msgs.body_bytes
        out["time"][row: row + k] = msgs.time
        pos.append(msgs.mention_pos + tok)
        codes.append(msgs.mention_codes)
        row, tok = row + k, tok + t
    if (row, tok) != (n, total):
        raise ValueError(f"{manifest.url}: the token store holds {row} rows / {tok} tokens, its manifest says "
                         f"{n} / {total}")
    for a in out.values():
        a.flush()
    np.save(os.path.join(tmp, "mention_pos.npy"), np.concatenate(pos) if pos else np.zeros(0, np.int64))
    np.save(os.path.join(tmp, "mention_codes.npy"), np.concatenate(codes) if codes else np.zeros(0, np.int32))
    del out


def open_store(folder: str) -> Messages:
    """A prepared token store (:func:`prepare_store`), memory-mapped: nothing is read until gathered."""
    a = {k: np.load(os.path.join(folder, f"{k}.npy"), mmap_mode="r") for k in _STORE_ARRAYS}
    return Messages(a["offsets"], a["ids"], None, a["body_len"], a["author"], a["body_bytes"], a["time"], None,
                    mention_pos=a["mention_pos"], mention_codes=a["mention_codes"])


FLAT_NEEDED = [S.window_tokens, S.window_roles, S.window_loss_mask, S.own_tokens, S.own_msg_offsets,
               S.other_tokens, S.other_msg_offsets, S.own_msg_roles, S.other_msg_roles]


SKIPPED = {"own": "_own_skipped", "other": "_other_skipped"}  # messages left out before a stream's kept tail


def _keep_tail(rows: pa.Table, msgs_col: str, gaps_col: str, store: Messages, limit: int) -> tuple[pa.Table, np.ndarray]:
    """``rows`` with each example's references in ``msgs_col``/``gaps_col`` cut to the messages
    that reach into the stream's last ``limit`` rendered tokens (what :func:`collate` keeps), and
    the number of messages left out per example."""
    arr = rows.column(msgs_col).combine_chunks()
    off = arr.offsets.to_numpy().astype(np.int64)
    m = arr.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]]
    off = off - off[0]
    lens = np.diff(off)
    row = np.repeat(np.arange(len(lens)), lens)
    L = np.asarray(store.body_len[m], dtype=np.int64) + PREFIX + SUFFIX
    csum = np.cumsum(L)
    after = (csum[off[1:] - 1][row] - csum) if len(m) else L     # tokens of the row's later messages
    keep = after < limit
    skipped = lens - np.bincount(row[keep], minlength=len(lens))
    if keep.all():
        return rows, skipped
    new_off = pa.array(exclusive_cumsum(lens - skipped).astype(np.int32))
    g = rows.column(gaps_col).combine_chunks()
    goff = g.offsets.to_numpy()
    gv = g.values.to_numpy(zero_copy_only=False)[goff[0]:goff[-1]]
    for name, values, typ in ((msgs_col, m[keep], pa.int64()), (gaps_col, gv[keep], pa.int32())):
        i = rows.schema.get_field_index(name)
        rows = rows.set_column(i, rows.schema.field(i), pa.ListArray.from_arrays(new_off, pa.array(values, typ)))
    return rows, skipped


def assemble(rows: pa.Table, store: Messages, specials: Specials, block_size: int | None = None,
             history_size: int | None = None) -> pa.Table:
    """Reference rows -> the flat columns :func:`collate` reads (schemas/assembly.py).

    With ``block_size``/``history_size``, only the messages that reach into what collate keeps
    (the window's last ``block_size + 1`` tokens, each stream's last ``history_size``) are
    assembled, and the streams' left-out message counts travel in ``_own_skipped`` /
    ``_other_skipped`` so the message indices (``*_seg``) stay those of the whole stream: the
    batch is the same, for less work."""
    skipped = {}
    if block_size is not None:
        rows, _ = _keep_tail(rows, R.window_msgs, R.window_gaps, store, block_size + 1)
    if history_size is not None:
        for name, msgs_col, gaps_col in (("own", R.own_msgs, R.own_gaps), ("other", R.other_msgs, R.other_gaps)):
            rows, skipped[name] = _keep_tail(rows, msgs_col, gaps_col, store, history_size)
    flat = flat_rows(rows, store, specials, columns=[*COLUMNS, *FLAT_NEEDED])
    for name, n in skipped.items():
        flat = flat.append_column(SKIPPED[name], pa.array(n.astype(np.int64)))
    return flat


# -- the order --------------------------------------------------------------------------------

def slot_units(manifest: Manifest, seed: int, epoch: int, n_slots: int, shuffle: bool) -> list[list[tuple]]:
    """Units (file index, row group, rows) of each slot, in reading order."""
    units = [(f, g, n) for f, s in enumerate(manifest.shards) for g, n in enumerate(s.row_groups)]
    if shuffle:
        perm = np.random.default_rng([seed, epoch]).permutation(len(units))
        units = [units[i] for i in perm]
    return [units[i::n_slots] for i in range(n_slots)]


class ShardStream(IterableDataset):
    """Collated batches of one rank for one epoch, starting after ``start`` consumed batches.

    ``shuffle=False`` (validation): manifest order, rows in file order, and every row is
    yielded (the last batch of a slot may be short)."""

    def __init__(self, manifest: Manifest, batch_size: int, *, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, start: int = 0, shuffle: bool = True,
                 shuffle_block: int = 4, block_size: int = 256, history_size: int = 256, static: bool = False):
        self.m, self.batch_size, self.seed, self.epoch = manifest, batch_size, seed, epoch
        self.rank, self.world, self.workers = rank, world_size, max(1, num_workers)
        self.start, self.shuffle, self.shuffle_block = start, shuffle, shuffle_block
        self.collate_args = dict(pad_id=manifest.pad_id, block_size=block_size, history_size=history_size, static=static)
        self.columns = COLUMNS if manifest.layout == "flat" else REF_COLUMNS
        # the token store is made local (and verified) once, here; each worker maps it
        self.store_dir = prepare_store(manifest) if manifest.layout == "reference" else None
        self._store = None
        n_slots = self.world * self.workers
        self.slots = slot_units(manifest, seed, epoch, n_slots, shuffle)
        # slot of (rank r, worker w) = r + world * w: round robin over ranks first
        self.my_slots = [self.slots[rank + self.world * w] for w in range(self.workers)]
        rows = [sum(n for _, _, n in u) for u in self.slots]
        if shuffle:
            if min(rows) < batch_size:
                raise ValueError(f"{manifest.url}: {len(sum(self.slots, []))} row groups ({sum(rows)} rows) cannot give "
                                 f"each of {n_slots} (rank, worker) slots a batch of {batch_size}; use fewer "
                                 "ranks/workers, a smaller batch, or shards with smaller row groups")
            self.per_slot = [min(rows) // batch_size] * self.workers
        else:
            self.per_slot = [-(-sum(n for _, _, n in u) // batch_size) for u in self.my_slots]

    def __len__(self) -> int:
        """Batches this rank yields in this epoch, counting from ``start``."""
        return max(0, sum(self.per_slot) - self.start)

    def __getstate__(self) -> dict:
        # A DataLoader worker maps the store itself: never pickle the mapped arrays (a copy each).
        return {**self.__dict__, "_store": None}

    def _assemble(self, rows: pa.Table) -> pa.Table:
        """Reference rows as the flat rows collate reads (the store mapped at first use, per worker)."""
        if self._store is None:
            self._store = (open_store(self.store_dir), Specials.of(self.m.special_tokens))
        return assemble(rows, *self._store, block_size=self.collate_args["block_size"],
                        history_size=self.collate_args["history_size"])

    def _slot_rows(self, w: int, first_batch: int):
        """Yield row-batches (pyarrow Tables of ``batch_size`` rows) of slot ``w`` from ``first_batch``."""
        units, B = self.my_slots[w], self.batch_size
        limit = self.per_slot[w] * B                     # rows this slot yields (the rest is dropped)
        skip = first_batch * B                           # rows already consumed
        pending, pos, files = [], 0, {}
        for b0 in range(0, len(units), self.shuffle_block):
            block = units[b0: b0 + self.shuffle_block]
            n = sum(k for _, _, k in block)
            if pos + n <= skip:                          # whole block consumed before: do not read it
                pos += n
                continue
            tables = []
            for f, g, _ in block:
                if f not in files:
                    files[f] = pq.ParquetFile(local_shard(self.m.shards[f]))
                tables.append(files[f].read_row_group(g, columns=self.columns))
            table = pa.concat_tables(tables)
            if self.shuffle:
                slot_id = self.rank + self.world * w
                order = np.random.default_rng([self.seed, self.epoch, slot_id, b0]).permutation(n)
                table = table.take(order)
            lo = max(0, skip - pos)
            table = table.slice(lo, max(0, min(n, limit - pos) - lo))
            if self.store_dir is not None:               # reference rows: assembled once per block
                table = self._assemble(table)
            pending.append(table)
            pos += n
            have = sum(t.num_rows for t in pending)
            while have >= B:
                rows = pa.concat_tables(pending)
                yield rows.slice(0, B)
                pending, have = [rows.slice(B)], have - B
            if pos >= limit:
                break
        rest = sum(t.num_rows for t in pending)
        if rest and not self.shuffle:
            yield pa.concat_tables(pending)

    def __iter__(self):
        info = get_worker_info()
        w = 0 if info is None else info.id
        if info is None and self.workers > 1:
            raise ValueError("a ShardStream made for several workers must run inside a DataLoader with them")
        j0 = self.start + w                              # first rank-level batch index this worker serves
        slot = j0 % self.workers
        for rows in self._slot_rows(slot, j0 // self.workers):
            yield collate(rows, **self.collate_args)


def make_loader(stream: ShardStream) -> DataLoader:
    """A DataLoader over a stream (batches are already collated; workers as the stream says)."""
    nw = stream.workers if stream.workers > 1 else 0
    # its own generator: creating an iterator draws a seed, which must not move the global RNG
    # (the forgetting regulariser's draws would shift on resume)
    return DataLoader(stream, batch_size=None, num_workers=nw, persistent_workers=False, generator=torch.Generator(),
                      pin_memory=torch.cuda.is_available(), prefetch_factor=4 if nw else None)


# -- collate -----------------------------------------------------------------------------------

def _pad_last(values: np.ndarray, offsets: np.ndarray, max_len: int, pad, width: int | None = None):
    """Ragged rows (flat ``values`` + ``offsets``) -> (rows, width) keeping each row's LAST
    ``max_len`` values, left-aligned, padded on the right. Returns (array, kept lengths)."""
    lens = np.diff(offsets)
    kept = np.minimum(lens, max_len)
    width = int(max(1, kept.max(initial=0))) if width is None else width
    out = np.full((len(lens), width), pad, dtype=values.dtype)
    rows = np.repeat(np.arange(len(lens)), kept)
    starts = np.repeat(np.cumsum(kept) - kept, kept)
    cols = np.arange(kept.sum()) - starts
    src = np.repeat(offsets[:-1] + lens - kept, kept) + cols
    out[rows, cols] = values[src]
    return out, kept


def _list(table: pa.Table, name: str):
    arr = table.column(name).combine_chunks()
    return arr.values.to_numpy(zero_copy_only=False), arr.offsets.to_numpy()


def _stream(table: pa.Table, tokens: str, msg_offsets: str, max_len: int, pad_id: int, static: bool,
            skipped: str | None = None, msg_roles: str | None = None, member_role: int | None = None):
    """A history stream -> tokens (B, H), message index per token (B, H), -1 on padding, and
    membership per token (B, H) float: 1 where the token's message has author role ``member_role``
    (the stream's person), 0 elsewhere and on padding (all 0 without a ``msg_roles`` column).

    ``skipped`` names a column of messages left out before the row's stream (:func:`assemble`):
    they count in the message index."""
    values, offsets = _list(table, tokens)
    starts, st_off = _list(table, msg_offsets)
    lens = np.diff(offsets)
    row = np.repeat(np.arange(len(lens)), np.diff(st_off))
    is_start = starts < lens[row]                        # the trailing total is not a message start
    marks = np.zeros(len(values), dtype=np.int64)        # +1 where a message starts
    np.add.at(marks, offsets[:-1][row[is_start]] + starts[is_start], 1)
    per_row = np.bincount(row[is_start], minlength=len(lens))
    seg = np.cumsum(marks) - 1 - np.repeat(np.cumsum(per_row) - per_row, lens)  # index within the row
    member = np.zeros(len(values), dtype=np.float32)
    if msg_roles is not None and msg_roles in table.column_names and len(values):
        roles, r_off = _list(table, msg_roles)              # one role per message of the row
        tok_row = np.repeat(np.arange(len(lens)), lens)
        member = (roles[r_off[:-1][tok_row] + np.maximum(seg, 0)] == member_role).astype(np.float32)
    if skipped is not None and skipped in table.column_names:
        seg = seg + np.repeat(table.column(skipped).to_numpy(), lens)
    width = max_len if static else None
    tok, _ = _pad_last(values.astype(np.int64), offsets, max_len, pad_id, width)
    seg, _ = _pad_last(seg.astype(np.int64), offsets, max_len, -1, width)
    member, _ = _pad_last(member, offsets, max_len, np.float32(0), width)
    return torch.from_numpy(tok), torch.from_numpy(seg), torch.from_numpy(member)


def collate(rows: pa.Table, *, pad_id: int, block_size: int, history_size: int, static: bool = False) -> dict:
    """Shard rows -> tensors (padding on the right, longer sequences keep their last tokens).

    ``idx``/``targets``/``roles`` (B, T): window tokens, the next token where it is a loss
    target (else -1), and the author role per token (-1 padding). ``own``/``other`` and
    ``*_seg`` (B, H): history tokens and their message index (-1 padding). Per example:
    ``weight``, ``target_bytes``, ``n_target`` (targets kept), ``truncated`` (targets lost to
    the window limit), ``target_role``; and ``self_id`` (a list of str) for per-user statistics,
    ``other_id``, ``target_message_id`` and ``target_labels`` (lists of str, labels None when
    absent) for tracing examples and splitting results by label in evaluation.
    """
    width = block_size + 1 if static else None
    w_vals, w_off = _list(rows, S.window_tokens)
    win, _ = _pad_last(w_vals.astype(np.int64), w_off, block_size + 1, pad_id, width)
    roles, _ = _pad_last(_list(rows, S.window_roles)[0].astype(np.int64), w_off, block_size + 1, -1, width)
    mask, _ = _pad_last(_list(rows, S.window_loss_mask)[0].astype(bool), w_off, block_size + 1, False, width)
    idx, targets = win[:, :-1], np.where(mask[:, 1:], win[:, 1:], -1)   # predict token t+1 from tokens <= t
    n_target = (targets >= 0).sum(1)
    first = np.argmax(mask, axis=1)                                      # first loss position: the target's body
    own, own_seg, own_member = _stream(rows, S.own_tokens, S.own_msg_offsets, history_size, pad_id, static,
                                       SKIPPED["own"], S.own_msg_roles, ROLE_SELF)
    other, other_seg, other_member = _stream(rows, S.other_tokens, S.other_msg_offsets, history_size, pad_id, static,
                                             SKIPPED["other"], S.other_msg_roles, ROLE_OTHER)
    n_tt = rows.column(S.n_target_tokens).to_numpy()
    return {
        "idx": torch.from_numpy(np.ascontiguousarray(idx)), "targets": torch.from_numpy(targets),
        "roles": torch.from_numpy(np.ascontiguousarray(roles[:, :-1])),
        "own": own, "own_seg": own_seg, "other": other, "other_seg": other_seg,
        "own_member": own_member, "other_member": other_member,
        "weight": torch.from_numpy(rows.column(S.weight).to_numpy().astype(np.float32)),
        "target_bytes": torch.from_numpy(rows.column(S.target_bytes).to_numpy().astype(np.int64)),
        "n_target": torch.from_numpy(n_target), "truncated": torch.from_numpy(n_target < n_tt),
        "target_role": torch.from_numpy(np.where(mask.any(1), roles[np.arange(len(first)), first], ROLE_THIRD)),
        "self_id": rows.column(S.self_id).to_pylist(),
        "other_id": rows.column(S.other_id).to_pylist(),
        "target_message_id": rows.column(S.target_message_id).to_pylist(),
        "target_labels": rows.column(S.target_labels).to_pylist(),
    }


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
