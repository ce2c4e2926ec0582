"""Faults in the storage layer: a run stopped at every write step, then run again.

A kill is simulated inside our own storage layer (pipelines/core/storage.py routes every rename,
file write and removal through ``_mv``, ``_write_file`` and ``_rm``): from the chosen step
on, every storage operation raises, so no clean-up handler can run, exactly as after
``kill -9``. Then the next run takes the output lock (which recovers) and the invariants
are checked: every table is whole (the old or the new version, never a mix, never
missing), every manifest's shards exist and verify, the trainer accepts a manifest only
when its build completed, and no ``.tmp-``/``.old-`` leftover remains. Two tests kill a
real subprocess with SIGKILL at the two interesting moments of a table replacement.

Inputs: the real Telegram sample (messages_raw rows) and the shards stage's test inputs
from real Diplomacy and Reddit texts (tests/test_tokenizer.py ``make_inputs``).
"""

import json
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from pipelines.stages import shards as SH
from pipelines.core import storage
from pipelines.stages import tokenizer as T
from pipelines.stages.ingest import ingest
from pipelines.core.lock import out_lock, read_holder, lock_path
from schemas import MESSAGES
from schemas.shards import BUILD_RECORD
from test_tokenizer import _ctx, make_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"target_file_bytes": 150_000, "row_group_rows": 16}  # 2 files in train: every kind of step, few steps


class Killed(BaseException):
    """The simulated SIGKILL: a BaseException, so `except Exception` clean-ups do not catch it."""


class Killer:
    """Counts storage steps; from step ``at`` on, every step raises (the process is gone)."""

    def __init__(self, monkeypatch, at: int | None):
        self.at, self.steps = at, []
        for name in ("_mv", "_rm", "_write_file"):
            real = getattr(storage, name)

            def step(*args, _real=real, _name=name, **kw):
                self.steps.append((_name, args[1]))
                if self.at is not None and len(self.steps) > self.at:
                    raise Killed(f"killed at step {self.at}: {self.steps[self.at]}")
                return _real(*args, **kw)

            monkeypatch.setattr(storage, name, step)


def leftovers(fs, root: str) -> list[str]:
    return [p for p in fs.find(root, withdirs=True) if storage.LEFTOVER.match(posixpath.basename(p.rstrip("/")))]


def _rows(url: str) -> list:
    return storage.read_arrow(url).sort_by("message_id").column("message_id").to_pylist()


@pytest.fixture(scope="module")
def telegram(real, tmp_path_factory):
    """Two versions of one real table: all Telegram messages (v1) and every other one (v2)."""
    d = tmp_path_factory.mktemp("telegram")
    ingest("telegram", [str(real / "telegram" / "*.json")], str(d / "raw"), str(d / "quarantine"))
    v1 = storage.read_arrow(str(d / "raw"))
    assert v1.num_rows > 20
    return v1, v1.take(list(range(0, v1.num_rows, 2)))


@pytest.fixture(params=["file", "memory"])
def out(request, tmp_path):
    return str(tmp_path / "out") if request.param == "file" else f"memory://faults-{uuid.uuid4().hex[:8]}/out"


def test_a_table_replacement_killed_at_any_step_recovers_whole(telegram, out, monkeypatch):
    v1, v2 = telegram
    url = storage.join(out, MESSAGES.name, "telegram")
    storage.write_dataset(url, v1, rows_per_file=7)
    counting = Killer(monkeypatch, None)
    storage.write_dataset(url, v2, rows_per_file=7)
    n_steps = len(counting.steps)
    kinds = [k for k, _ in counting.steps]
    assert kinds.count("_write_file") > 1 and kinds[-3:] == ["_mv", "_mv", "_rm"]  # files, old away, new in, old gone
    fs, root = storage.fs_and_path(out)
    want = {"v1": sorted(v1.column("message_id").to_pylist()), "v2": sorted(v2.column("message_id").to_pylist())}
    for at in range(n_steps):
        monkeypatch.undo()
        storage.write_dataset(url, v1, rows_per_file=7)
        Killer(monkeypatch, at)
        with pytest.raises(Killed):
            storage.write_dataset(url, v2, rows_per_file=7)
        monkeypatch.undo()
        with out_lock(out, "rerun after a kill") as report:
            assert leftovers(fs, root) == [], f"step {at}"
            got = _rows(url)  # whole: readable, and exactly one of the two versions
            assert got in (want["v1"], want["v2"]), f"step {at}: a mix of versions"
            # Before the swap began the old table stays; once the new one is in, it stays.
            assert got == (want["v2"] if at >= n_steps - 1 else want["v1"]), f"step {at}"
            if at == n_steps - 2:  # killed between the two renames: no live table was left
                assert report["restored"] == [storage.fs_and_path(url)[1]]
            storage.write_dataset(url, v2, rows_per_file=7)  # and the rerun's own write succeeds
        assert _rows(url) == want["v2"] and leftovers(fs, root) == []


def test_a_small_file_replacement_killed_at_any_step_keeps_old_or_new(out, monkeypatch):
    url = storage.join(out, "tokenizer.json")
    counting = Killer(monkeypatch, None)
    storage.write_bytes(url, b"old")
    n_steps = len(counting.steps)
    monkeypatch.undo()
    fs, root = storage.fs_and_path(out)
    for at in range(n_steps):
        storage.write_bytes(url, b"old")
        Killer(monkeypatch, at)
        with pytest.raises(Killed):
            storage.write_bytes(url, b"new")
        monkeypatch.undo()
        with out_lock(out):
            assert fs.cat_file(storage.fs_and_path(url)[1]) == b"old" and leftovers(fs, root) == []


@pytest.fixture(scope="module")
def shard_inputs(real, tmp_path_factory):
    """Timeline, examples and tokenizer under a local out, and a first complete shards build."""
    out = str(tmp_path_factory.mktemp("shard_faults"))
    make_inputs(real, out)
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards=SMALL)
    T.run(ctx)
    SH.run(ctx)
    return out


def _manifests(out: str) -> dict[str, str]:
    return {s: storage.join(out, "shards", s, SH.MANIFEST) for s in SH.SPLITS}


def _check_shards_invariants(out: str, where: str) -> bool:
    """Every manifest present verifies; the trainer accepts the splits only with a complete build
    record naming them, else refuses every one. Returns whether the build is complete."""
    from trainer import data

    complete = os.path.exists(storage.join(out, "shards", BUILD_RECORD))
    for split, url in _manifests(out).items():
        if not os.path.exists(url):
            assert not complete, f"{where}: the build record names a missing {split} manifest"
            continue
        check = SH.verify_manifest(url)
        assert check.passed, f"{where}: {check.description}"
        if complete:
            assert data.load_manifest(url).rows == json.loads(open(url).read())["rows"]
        else:
            with pytest.raises(ValueError, match="did not finish"):
                data.load_manifest(url)
    if complete:
        assert SH.verify_build_record(storage.join(out, "shards")).passed, where
    return complete


@pytest.mark.slow
def test_a_shards_build_killed_at_any_step_is_refused_until_rebuilt(shard_inputs, monkeypatch):
    out = shard_inputs
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards=SMALL)
    shards_dir = storage.join(out, "shards")
    good = storage.join(os.path.dirname(out), "good-shards")
    shutil.copytree(shards_dir, good)  # a complete build (seed 0), put back before each kill
    crashing = _ctx(out, tokenizer={"vocab_size": 1000}, shards={**SMALL, "seed": 7})  # other files, old to remove
    counting = Killer(monkeypatch, None)
    SH.run(crashing)
    steps = list(counting.steps)
    monkeypatch.undo()
    assert steps[0][0] == "_rm" and steps[0][1].endswith(BUILD_RECORD)  # the record goes first...
    assert steps[-1][0] == "_mv" and BUILD_RECORD + ".tmp-" in steps[-1][1]  # ... and is renamed in last
    assert any(k == "_rm" and ".parquet" in p for k, p in steps)  # old files removed after a manifest
    for at in range(len(steps)):
        shutil.rmtree(shards_dir)
        shutil.copytree(good, shards_dir)
        Killer(monkeypatch, at)
        with pytest.raises(Killed):  # the next build dies at step `at`
            SH.run(crashing)
        monkeypatch.undo()
        with out_lock(out):
            fs, root = storage.fs_and_path(out)
            assert leftovers(fs, root) == [], f"step {at}: {steps[at]}"
            complete = _check_shards_invariants(out, f"after a kill at step {at} {steps[at]}")
            # Killed before it removed the record, the previous build is untouched and complete;
            # killed at any later step, even the record's own final rename, the build is incomplete.
            assert complete == (at == 0), f"step {at}: {steps[at]}"
    SH.run(ctx)
    assert _check_shards_invariants(out, "after a complete rebuild")
    for split, url in _manifests(out).items():
        man = json.loads(open(url).read())
        assert sorted(os.listdir(os.path.dirname(url))) == sorted([SH.MANIFEST, *(s["path"] for s in man["shards"])])


def test_the_build_record_names_config_tokenizer_and_every_manifest(shard_inputs):
    out = shard_inputs
    record = json.loads(open(storage.join(out, "shards", BUILD_RECORD)).read())
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards=SMALL)
    assert record["config_hash"] == SH.config_hash(ctx.config)
    assert record["tokenizer_sha256"] == T.sha256_of(storage.join(out, "tokenizer.json"))
    assert set(record["splits"]) == set(SH.SPLITS) and record["engine"] == "polars"
    # another setting is another build
    assert SH.config_hash(_ctx(out, tokenizer={"vocab_size": 1000}, shards={**SMALL, "seed": 3}).config) != \
        record["config_hash"]


def test_the_trainer_refuses_a_manifest_rewritten_after_the_build(shard_inputs, tmp_path):
    from trainer import data

    src = _manifests(shard_inputs)["train"]
    (tmp_path / "train").mkdir()
    doc = json.loads(open(src).read())
    doc["shards"] = [dict(s, path=f"{os.path.dirname(src)}/{s['path']}") for s in doc["shards"][:1]]
    doc["rows"] = doc["shards"][0]["rows"]
    (tmp_path / "train" / SH.MANIFEST).write_text(json.dumps(doc))
    with open(storage.join(shard_inputs, "shards", BUILD_RECORD)) as f:
        (tmp_path / BUILD_RECORD).write_text(f.read())
    with pytest.raises(ValueError, match="not the one the completed build recorded"):
        data.load_manifest(str(tmp_path / "train" / SH.MANIFEST))


# -- a real SIGKILL ---------------------------------------------------------------------------

_WRITER = r"""
import os, sys, time
from pipelines.core import storage
from pipelines.core.lock import out_lock

out, url, moment, ready = sys.argv[1:5]
v1 = storage.read_arrow(url)
real_mv = storage._mv

def mv(fs, src, dst, recursive=False):
    real_mv(fs, src, dst, recursive)
    if moment == "between-renames" and ".old-" in dst:
        open(ready, "w").close()
        time.sleep(120)

storage._mv = mv

def batches():
    yield v1.slice(0, 10)
    if moment == "mid-write":
        open(ready, "w").close()
        time.sleep(120)
    yield v1.slice(10)

with out_lock(out, "writer to be killed"):
    storage.write_dataset(url, batches(), rows_per_file=5)
"""


@pytest.mark.parametrize("moment", ["mid-write", "between-renames"])
def test_sigkill_of_a_writer_is_repaired_by_the_next_run(telegram, tmp_path, moment, caplog):
    v1, _ = telegram
    out = str(tmp_path / "out")
    url = storage.join(out, MESSAGES.name, "telegram")
    storage.write_dataset(url, v1)
    ready = str(tmp_path / "ready")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, out, url, moment, ready], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        assert proc.poll() is None, "the writer exited before the kill point"
        assert time.monotonic() < deadline, "the writer never reached the kill point"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    fs, root = storage.fs_and_path(out)
    left = leftovers(fs, root)
    assert any(".tmp-" in p for p in left)
    assert read_holder(os.path.realpath(lock_path(out)))["pid"] == proc.pid  # it never released
    if moment == "between-renames":
        with pytest.raises(FileNotFoundError):
            storage.read_arrow(url)  # the window a kill can leave: no live table
    with caplog.at_level("WARNING", logger="socialcorpus.lock"):
        with out_lock(out, "next run") as report:
            assert report["stale_holder"]["pid"] == proc.pid
            assert leftovers(fs, root) == []
            assert _rows(url) == sorted(v1.column("message_id").to_pylist())  # the old table, whole
            assert report["restored"] == ([url] if moment == "between-renames" else [])
    assert f"pid {proc.pid}" in caplog.text and "stale" in caplog.text


@pytest.mark.spark
def test_spark_shards_write_the_same_build_record_last(shard_inputs, spark, tmp_path):
    from pipelines.engines.spark import SparkEngine

    out = str(tmp_path / "spark")
    shutil.copytree(shard_inputs, out, ignore=shutil.ignore_patterns("shards", ".socialcorpus-lock*"))
    ctx = _ctx(out, tokenizer={"vocab_size": 1000}, shards=SMALL)
    SH.run(ctx)
    polars_record = json.loads(open(storage.join(out, "shards", BUILD_RECORD)).read())
    SH.run(ctx, SparkEngine(spark))
    record = json.loads(open(storage.join(out, "shards", BUILD_RECORD)).read())
    assert record["engine"] == "spark" and _check_shards_invariants(out, "spark build")
    same = {k: v for k, v in record.items() if k not in ("engine", "completed_at")}
    assert same == {k: v for k, v in polars_record.items() if k not in ("engine", "completed_at")}
