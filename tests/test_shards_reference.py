"""The reference layout (schema version 3) through the loader: the same batches as the flat layout,
a token store holding each referenced message once, exact resume, integrity, remote stores, readers.

Each corpus is built once per layout (module fixtures): the demo corpus (`socialcorpus sample`,
seed 0, scale 1) with small files and row groups (``DEMO_SETTINGS``: many shard files, two store
files, many loader units), and the real samples with the default ``[shards]`` (the reference side is
the session's shared build, conftest ``real_built``). The loader's cache (``trainer.data.CACHE``)
is a temporary folder for the whole module; tests that must start from an empty one set their own.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.core.settings import ShardsConfig
from pipelines.stages import shards as SH
from schemas import SHARD_REF as R
from schemas import TOKEN_STORE as TS
from schemas.shards import BUILD_RECORD
from trainer import data

from conftest import TEST_SECRET

SPLITS = ("train", "validation", "test")
DEMO_SETTINGS = ["shards.target_file_bytes=100000", "shards.row_group_rows=64"]
# Nothing is cut by collate (the builds' budgets are 2,048 tokens), so every assembled token is compared.
FULL = dict(block_size=2048, history_size=2048)


@dataclass(frozen=True)
class Build:
    shards: str      # OUT/shards
    summary: dict    # the shards stage's summary

    def manifest(self, split: str) -> str:
        return f"{self.shards}/{split}/{SH.MANIFEST}"


@pytest.fixture(scope="module", autouse=True)
def shard_cache(tmp_path_factory):
    """The loader's store cache in a temporary folder (never ~/.cache) for this module."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("shard_cache")
        mp.setattr(data, "CACHE", str(folder))
        yield folder


def _check_layout(b: Build, layout: str) -> Build:
    for split in SPLITS:
        assert data.load_manifest(b.manifest(split)).layout == layout, (b.shards, split)
    assert b.summary["layout"] == layout
    return b


@pytest.fixture(scope="module")
def demo_builds(tmp_path_factory) -> dict[str, Build]:
    """{layout: Build} of the demo corpus, same dumps and settings but the layout."""
    from pipelines.build import build
    from pipelines.core import config as cfgmod
    from pipelines.core.context import RunContext
    from pipelines.sample import write_sample

    out = {}
    for layout in ("flat", "reference"):
        dumps = tmp_path_factory.mktemp(f"demo_{layout}") / "dumps"
        write_sample(str(dumps), seed=0, scale=1)
        cfg = cfgmod.load(str(dumps / "corpus.toml")).with_settings([f"shards.layout={layout}", *DEMO_SETTINGS])
        summary = build(RunContext(cfg))
        out[layout] = _check_layout(Build(cfg.table_url("shards"), summary["shards"]), layout)
    return out


@pytest.fixture(scope="module")
def real_builds(real_built, tmp_path_factory) -> dict[str, Build]:
    """{layout: Build} of the real samples: the session's build (the default layout, reference) and
    a flat one of the same config and secret in another folder."""
    from pipelines.build import build
    from pipelines.core.context import RunContext

    cfg, summary = real_built
    ref = _check_layout(Build(cfg.table_url("shards"), summary["shards"]), "reference")
    flat_cfg = cfg.with_overrides(out=str(tmp_path_factory.mktemp("real_flat"))).with_settings(["shards.layout=flat"])
    flat_summary = build(RunContext(flat_cfg, secret_value=TEST_SECRET))
    return {"flat": _check_layout(Build(flat_cfg.table_url("shards"), flat_summary["shards"]), "flat"),
            "reference": ref}


@pytest.fixture(scope="module", params=["demo", "real"])
def builds(request) -> dict[str, Build]:
    return request.getfixturevalue(f"{request.param}_builds")


def assert_same_batch(x: dict, y: dict, where: str) -> None:
    assert x.keys() == y.keys(), where
    for k in x:
        if torch.is_tensor(x[k]):
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, (where, k)
            assert torch.equal(x[k], y[k]), (where, k)
        else:
            assert isinstance(x[k], list) and x[k] == y[k], (where, k)


def assert_same_batches(a, b, where: str) -> int:
    """Every batch of the iterables ``a`` and ``b`` equal, and as many; returns the count."""
    n = 0
    for n, (x, y) in enumerate(itertools.zip_longest(a, b), 1):
        assert x is not None and y is not None, f"{where}: one stream ended at batch {n - 1}"
        assert_same_batch(x, y, f"{where}, batch {n - 1}")
    return n


def _store(b: Build) -> tuple[dict, pa.Table]:
    man = SH.read_manifest(b.manifest("train"))
    return man, pa.concat_tables([SH.read_file(b.manifest("train"), f) for f in man["store"]["files"]])


def _copy_shards(b: Build, dest: Path) -> Path:
    shutil.copytree(b.shards, dest)
    return dest


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


# -- 1. the same batches from both layouts -----------------------------------------------------------

# The demo corpus is compared token for token; the real one at the trainer's default lengths (the
# last 256 tokens of each stream), and token for token in the slow test.
SIZES = [*(pytest.param("demo", s, FULL, id=f"demo-{s}-full") for s in SPLITS),
         *(pytest.param("real", s, dict(block_size=256, history_size=256), id=f"real-{s}-256") for s in SPLITS),
         *(pytest.param("real", s, FULL, id=f"real-{s}-full", marks=pytest.mark.slow) for s in SPLITS)]


@pytest.mark.parametrize("corpus, split, sizes", SIZES)
def test_both_layouts_give_identical_batches(corpus, split, sizes, request):
    """Every split, shuffled or not, 1 and 2 ranks: every batch of the reference build equals the
    flat build's (every tensor and list), and as many; unshuffled, the ranks together yield every row."""
    builds = request.getfixturevalue(f"{corpus}_builds")
    mf, mr = (data.load_manifest(builds[k].manifest(split)) for k in ("flat", "reference"))
    assert mr.rows == mf.rows > 0 and [s.row_groups for s in mr.shards] == [s.row_groups for s in mf.shards]
    for shuffle, world in itertools.product((False, True), (1, 2)):
        rows = 0
        for rank in range(world):
            kw = dict(seed=1, shuffle=shuffle, rank=rank, world_size=world, **sizes)
            a, b = data.ShardStream(mf, 32, **kw), data.ShardStream(mr, 32, **kw)
            assert len(a) == len(b) > 0
            where = f"{split} shuffle={shuffle} rank {rank}/{world}"
            got = 0
            for n, (x, y) in enumerate(itertools.zip_longest(a, b), 1):
                assert x is not None and y is not None, f"{where}: one stream ended at batch {n - 1}"
                assert_same_batch(x, y, f"{where}, batch {n - 1}")
                rows += len(x["self_id"])
                got = n
            assert got == len(a), where
        if not shuffle:
            assert rows == mr.rows, (split, world)


def test_export_flat_of_the_reference_build_is_byte_identical_to_the_flat_build(builds, tmp_path):
    out = tmp_path / "exported"
    SH.export_flat(builds["reference"].shards, str(out))
    flat = Path(builds["flat"].shards)
    want = sorted(p.relative_to(flat) for p in flat.rglob("*") if p.is_file())
    got = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert got == want and sum(p.suffix == ".parquet" for p in want) >= 3
    for rel in want:
        if rel.name != BUILD_RECORD:
            assert (out / rel).read_bytes() == (flat / rel).read_bytes(), rel
    a, b = (json.loads((d / BUILD_RECORD).read_text()) for d in (flat, out))
    assert a["splits"] == b["splits"] and a["schema_version"] == b["schema_version"] == 2
    assert a["tokenizer_sha256"] == b["tokenizer_sha256"]
    for split in SPLITS:
        assert SH.verify_manifest(str(out / split / SH.MANIFEST)).passed


# -- 2. the token store ----------------------------------------------------------------------------

def test_the_store_holds_each_referenced_message_once(builds):
    ref = builds["reference"]
    man, store = _store(ref)
    stored = int(pc.sum(pc.list_value_length(store.column(TS.tokens))).as_py())
    ratio = stored / ref.summary["message_tokens"]
    print(f"\nstore tokens {stored} / message_tokens {ref.summary['message_tokens']} = {ratio:.4f}; "
          f"flat shards carry {builds['flat'].summary['stored_tokens']} tokens "
          f"({builds['flat'].summary['stored_tokens'] / stored:.1f}x the store)")
    assert ratio <= 1.3
    assert stored == man["store"]["tokens"] == ref.summary["stored_tokens"] and store.num_rows == man["store"]["rows"]
    for split in SPLITS:
        assert SH.read_manifest(ref.manifest(split))["store"] == man["store"]  # one store, named alike by every split
    frame = pl.from_arrow(store.select([TS.message_id, TS.timeline_id, TS.seq]))
    assert frame[TS.message_id].n_unique() == store.num_rows
    assert frame.select(TS.timeline_id, TS.seq).unique().height == store.num_rows


@pytest.mark.parametrize("corpus", ["demo", "real"])
def test_every_store_row_is_referenced_by_an_example(corpus, request):
    ref = request.getfixturevalue(f"{corpus}_builds")["reference"]
    refs = []
    for split in SPLITS:
        m = SH.read_manifest(ref.manifest(split))
        for s in m["shards"]:
            t = SH.read_file(ref.manifest(split), s, columns=[R.window_msgs, R.own_msgs, R.other_msgs])
            refs += [pc.list_flatten(c).to_numpy() for c in t.columns]
    used = np.unique(np.concatenate(refs))
    unused = np.setdiff1d(np.arange(m["store"]["rows"]), used)
    assert used.min() >= 0 and used.max() < m["store"]["rows"]
    assert len(unused) == 0, f"{len(unused)} of {m['store']['rows']} store rows unreferenced: {unused[:10]}"


# -- 3. resume ---------------------------------------------------------------------------------------

def test_a_resumed_reference_stream_continues_the_same_sequence(demo_builds):
    """Two DataLoader workers: started at consumed batch c, the stream yields batches c, c+1, …
    of the uninterrupted one (which is also the flat build's)."""
    mr = data.load_manifest(demo_builds["reference"].manifest("train"))
    mf = data.load_manifest(demo_builds["flat"].manifest("train"))
    kw = dict(seed=5, num_workers=2, block_size=64, history_size=32)
    full = list(data.make_loader(data.ShardStream(mr, 32, **kw)))
    assert len(full) == len(data.ShardStream(mr, 32, **kw)) > 10
    assert assert_same_batches(data.make_loader(data.ShardStream(mf, 32, **kw)), full, "flat") == len(full)
    for start in (1, 4, 7, len(full) - 1):
        rest = data.ShardStream(mr, 32, start=start, **kw)
        assert len(rest) == len(full) - start
        assert assert_same_batches(data.make_loader(rest), full[start:], f"start={start}") == len(full) - start


def test_a_stream_that_has_mapped_its_store_pickles_without_it(demo_builds):
    """A stream iterated in the parent before it goes to DataLoader workers must not ship the
    mapped store arrays to each worker (pickling a memmap copies it): workers map it themselves."""
    import pickle

    m = data.load_manifest(demo_builds["reference"].manifest("train"))
    stream = data.ShardStream(m, 16, seed=2, block_size=64, history_size=32)
    first = next(iter(stream))
    assert stream._store is not None
    blob = pickle.dumps(stream)
    assert len(blob) < 100_000 < m.store_tokens * 4       # the store's ids alone would be more
    again = pickle.loads(blob)
    assert again._store is None
    assert_same_batch(next(iter(again)), first, "unpickled")


# -- 4. integrity ------------------------------------------------------------------------------------

def test_a_changed_store_file_is_refused_by_the_loader_and_by_verify(demo_builds, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE", str(tmp_path / "cache"))  # nothing prepared from the good files
    copy = _copy_shards(demo_builds["reference"], tmp_path / "shards")
    man = json.loads((copy / "train" / SH.MANIFEST).read_text())
    assert len(man["store"]["files"]) >= 2
    rel = man["store"]["files"][-1]["path"]
    _flip_a_byte(copy / "train" / rel)
    m = data.load_manifest(str(copy / "train" / SH.MANIFEST))  # the manifest itself is unchanged
    with pytest.raises(ValueError, match=rf"{re.escape(Path(rel).name)}: sha256 .* does not match"):
        data.ShardStream(m, 8, shuffle=False)
    assert not any(p.name.startswith("store-") and p.is_dir() and not p.name.endswith(".tmp")
                   for p in (tmp_path / "cache").iterdir())
    for split in SPLITS:
        check = SH.verify_manifest(str(copy / split / SH.MANIFEST))
        assert not check.passed and check.failed_rows == 1
        assert rel in check.description and any(rel in s for s in check.samples)


def test_a_refused_store_leaves_nothing_in_the_cache(demo_builds, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CACHE", str(tmp_path / "cache"))
    copy = _copy_shards(demo_builds["reference"], tmp_path / "shards")
    man = json.loads((copy / "train" / SH.MANIFEST).read_text())
    _flip_a_byte(copy / "train" / man["store"]["files"][-1]["path"])
    with pytest.raises(ValueError, match="sha256"):
        data.ShardStream(data.load_manifest(str(copy / "train" / SH.MANIFEST)), 8, shuffle=False)
    assert os.listdir(tmp_path / "cache") == []


def _rewrite_first_shard(folder: Path, change) -> dict:
    """Apply ``change`` (Table -> Table) to the split's first shard and write it back as the build
    would (same encoding, new name and manifest entry); returns the manifest."""
    mpath = folder / SH.MANIFEST
    man = json.loads(mpath.read_text())
    entry = man["shards"][0]
    table = pq.read_table(folder / entry["path"])
    new = change(table).replace_schema_metadata(table.schema.metadata)
    name, raw, new_entry = SH.encode_shard(new, 0, ShardsConfig(), row_group_rows=entry["row_groups"][0])
    (folder / entry["path"]).unlink()
    (folder / name).write_bytes(raw)
    man["shards"][0] = new_entry
    mpath.write_text(json.dumps(man, indent=1) + "\n")
    return man


def _set_first_window_ref(value: int):
    def change(table: pa.Table) -> pa.Table:
        col = table.column(R.window_msgs).combine_chunks()
        values = col.values.to_numpy().copy()
        values[col.offsets[0].as_py()] = value
        new = pa.ListArray.from_arrays(col.offsets, pa.array(values, pa.int64()))
        return table.set_column(table.schema.get_field_index(R.window_msgs), R.window_msgs, new)
    return change


def test_a_reference_past_the_store_fails_verify_manifest(demo_builds, tmp_path):
    copy = _copy_shards(demo_builds["reference"], tmp_path / "shards")
    store_rows = json.loads((copy / "train" / SH.MANIFEST).read_text())["store"]["rows"]
    assert SH.verify_manifest(str(copy / "train" / SH.MANIFEST)).passed
    _rewrite_first_shard(copy / "train", _set_first_window_ref(store_rows))
    check = SH.verify_manifest(str(copy / "train" / SH.MANIFEST))
    assert not check.passed and check.failed_rows == 1  # the file itself matches its (new) entry
    assert f"store row {store_rows}" in check.description and f"{store_rows} rows" in check.description


def test_a_negative_reference_fails_verify_manifest(demo_builds, tmp_path):
    copy = _copy_shards(demo_builds["reference"], tmp_path / "shards")
    _rewrite_first_shard(copy / "train", _set_first_window_ref(-2))  # -1 happens to fail in the loader, -2 not
    check = SH.verify_manifest(str(copy / "train" / SH.MANIFEST))
    assert not check.passed and check.failed_rows == 1 and "store row -2" in check.description


# -- 5. a remote store -------------------------------------------------------------------------------

def _to_memory(local: str) -> str:
    root = f"memory://reference-{uuid.uuid4().hex[:8]}/shards"
    fs = fsspec.filesystem("memory")
    for p in Path(local).rglob("*"):
        if p.is_file():
            fs.pipe(f"{root}/{p.relative_to(local).as_posix()}", p.read_bytes())
    return root


def test_a_remote_store_is_fetched_into_the_cache_and_gives_the_local_batches(demo_builds, tmp_path, monkeypatch):
    """The local build's store is prepared in one cache, the remote copy's in another (so it is
    fetched, not found prepared); every batch is the same."""
    cache, local_cache = tmp_path / "cache", tmp_path / "local_cache"
    local = demo_builds["reference"]
    root = _to_memory(local.shards)
    try:
        for split, shuffle in (("train", True), ("validation", False)):
            ml = data.load_manifest(local.manifest(split))
            mm = data.load_manifest(f"{root}/{split}/{SH.MANIFEST}")
            assert mm.store and all(s.url.startswith("memory://") and "/shards/store/" in s.url for s in mm.store)
            kw = dict(seed=2, shuffle=shuffle, **FULL)
            monkeypatch.setattr(data, "CACHE", str(local_cache))
            a = data.ShardStream(ml, 32, **kw)
            monkeypatch.setattr(data, "CACHE", str(cache))   # the remote shards are fetched while iterating
            b = data.ShardStream(mm, 32, **kw)
            assert len(a) == len(b) > 0
            assert b.store_dir.startswith(str(cache)) and a.store_dir.startswith(str(local_cache))
            assert assert_same_batches(a, b, split) == len(a)
        fetched = {p.name for p in cache.iterdir()}
        assert {f"{s.sha256}.parquet" for s in (*mm.store, *mm.shards)} <= fetched
        assert f"store-{data.store_key(mm)}" in fetched and not any(n.endswith(".tmp") for n in fetched)
    finally:
        fsspec.filesystem("memory").rm(root.split("://", 1)[1].split("/")[0], recursive=True)


def test_a_changed_remote_store_file_is_refused_naming_it(demo_builds, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "CACHE", str(cache))
    root = _to_memory(demo_builds["reference"].shards)
    fs = fsspec.filesystem("memory")
    try:
        man = json.loads(fs.cat_file(f"{root}/train/{SH.MANIFEST}"))
        rel = man["store"]["files"][0]["path"]
        url = f"{root}/store/{Path(rel).name}"
        raw = bytearray(fs.cat_file(url))
        raw[len(raw) // 2] ^= 0xFF
        fs.pipe(url, bytes(raw))
        m = data.load_manifest(f"{root}/train/{SH.MANIFEST}")
        with pytest.raises(ValueError, match=rf"{re.escape(url)}: sha256 .* does not match"):
            data.ShardStream(m, 8, shuffle=False)
        assert f"{man['store']['files'][0]['sha256']}.parquet" not in os.listdir(cache)  # not kept
        assert not SH.verify_manifest(f"{root}/train/{SH.MANIFEST}").passed
    finally:
        fs.rm(root.split("://", 1)[1].split("/")[0], recursive=True)


# -- 6. other readers --------------------------------------------------------------------------------

def _files(b: Build, split: str) -> tuple[dict, list[str], list[str]]:
    man = SH.read_manifest(b.manifest(split))
    folder = f"{b.shards}/{split}"
    return (man, [os.path.normpath(f"{folder}/{s['path']}") for s in man["shards"]],
            [os.path.normpath(f"{folder}/{s['path']}") for s in man["store"]["files"]])


def test_polars_and_duckdb_read_the_store_and_the_example_files(demo_builds):
    ref = demo_builds["reference"]
    for split in SPLITS:
        man, shards, store = _files(ref, split)
        got = pl.scan_parquet(shards).select(pl.len(), pl.col(R.n_tokens).sum(), pl.col(R.n_target_tokens).sum(),
                                             pl.col(R.window_msgs).list.len().sum()).collect().row(0)
        assert got[:3] == (man["rows"], man["tokens"], man["target_tokens"]) and got[3] >= man["rows"]
        q = duckdb.sql(f"select count(*), sum(n_tokens), sum(n_target_tokens), max(list_max(window_msgs)) "
                       f"from read_parquet({shards!r})").fetchall()[0]
        assert q[:3] == (man["rows"], man["tokens"], man["target_tokens"]) and q[3] < man["store"]["rows"]
    st = man["store"]
    got = pl.scan_parquet(store).select(pl.len(), pl.col(TS.tokens).list.len().sum()).collect().row(0)
    assert got == (st["rows"], st["tokens"])
    q = duckdb.sql(f"select count(*), sum(len(tokens)), count(distinct message_id) from read_parquet({store!r})")
    assert q.fetchall() == [(st["rows"], st["tokens"], st["rows"])]


def test_hugging_face_datasets_opens_the_store_and_the_example_files(demo_builds, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from datasets import load_dataset

    man, shards, store = _files(demo_builds["reference"], "validation")
    ex = load_dataset("parquet", data_files=shards, split="train", cache_dir=str(tmp_path / "cache"))
    assert ex.num_rows == man["rows"] and sum(ex[R.n_tokens]) == man["tokens"]
    assert sum(ex[R.n_target_tokens]) == man["target_tokens"]
    first = pq.read_table(shards[0]).slice(0, 1).to_pylist()[0]
    assert ex[0][R.window_msgs] == first[R.window_msgs] and ex[0][R.self_code] == first[R.self_code]
    st = load_dataset("parquet", data_files=store, split="train", cache_dir=str(tmp_path / "cache"))
    assert st.num_rows == man["store"]["rows"]
    assert sum(map(len, st[TS.tokens])) == man["store"]["tokens"]
    assert st[0][TS.tokens] == pq.read_table(store[0]).column(TS.tokens)[0].as_py()
