"""One writer per `out`: a second build refuses naming the holder; a dead holder's lock is taken over.

Real processes throughout, on a corpus over the real Telegram sample: the holder is a Python
process inside ``pipelines.core.lock.out_lock`` (so the test controls how long it holds) or a real
build paused after its train shards; the contender is the real ``socialcorpus`` CLI or a
Dagster materialisation; kills are real SIGKILLs.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from pipelines.core import storage
from pipelines.core.lock import OutLockedError, lock_path, out_lock, read_holder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "SOCIALCORPUS_SECRET": "test-secret-not-for-production"}

_HOLDER = r"""
import sys
from pipelines.core.lock import out_lock
with out_lock(sys.argv[1], "holder under test"):
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
"""


@pytest.fixture
def corpus(real, tmp_path):
    cfg = tmp_path / "corpus.toml"
    cfg.write_text(f'out = "out"\n\n[[sources]]\nformat = "telegram"\npaths = ["{real}/telegram/*.json"]\n')
    return str(cfg), str(tmp_path / "out")


def hold(out: str) -> subprocess.Popen:
    """A real process holding the lock on ``out`` until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, out], cwd=ROOT, env=ENV, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def socialcorpus(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_a_second_build_on_the_same_out_refuses_naming_the_holder(corpus, real):
    cfg, out = corpus
    holder = hold(out)
    try:
        for args in (["build", "--config", cfg], ["ingest", "telegram", f"{real}/telegram/*.json", "--out", out]):
            r = socialcorpus(*args)
            assert r.returncode == 2, r.stderr
            assert f"pid {holder.pid} on host {socket.gethostname()}" in r.stderr
            assert "holder under test" in r.stderr and "another run is writing" in r.stderr
        assert not os.path.exists(storage.join(out, "messages_raw"))  # nothing was written
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    r = socialcorpus("build", "--config", cfg, "--until", "ingest", "--json")
    assert r.returncode == 0, r.stderr  # released: the next build runs
    assert json.loads(r.stdout)["ingest"]["messages"] > 0
    assert "recovered" not in json.loads(r.stdout)  # a clean release leaves nothing to take over


def test_export_flat_refuses_while_a_build_holds_its_source_or_a_run_holds_its_target(corpus, tmp_path):
    from pipelines.stages import shards as SH

    cfg, out = corpus
    assert socialcorpus("build", "--config", cfg).returncode == 0
    dest = str(tmp_path / "flat")
    for held in (out, dest):
        holder = hold(held)
        try:
            r = socialcorpus("export-flat", "--shards", storage.join(out, "shards"), "--out", dest)
            assert r.returncode == 2 and f"pid {holder.pid}" in r.stderr, r.stderr
            assert not os.path.exists(storage.join(dest, "train"))  # nothing was written
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    r = socialcorpus("export-flat", "--shards", storage.join(out, "shards"), "--out", dest, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema_version"] == 2
    assert SH.verify_manifest(storage.join(dest, "train", SH.MANIFEST)).passed


def test_the_lock_of_a_killed_build_is_taken_over_with_a_warning(corpus):
    cfg, out = corpus
    holder = hold(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert read_holder(os.path.realpath(lock_path(out)))["pid"] == holder.pid  # it never released
    r = socialcorpus("build", "--config", cfg, "--until", "ingest", "--json")
    assert r.returncode == 0, r.stderr
    assert f"taking over a stale output lock: its holder (pid {holder.pid}" in r.stderr
    assert "is no longer running" in r.stderr
    assert json.loads(r.stdout)["recovered"]["stale_holder"]["pid"] == holder.pid
    assert read_holder(os.path.realpath(lock_path(out))) is None  # released cleanly this time


def test_a_waiting_run_gets_the_lock_when_the_holder_finishes(tmp_path):
    out = str(tmp_path / "out")
    holder = hold(out)
    with pytest.raises(OutLockedError, match=f"pid {holder.pid}"):
        with out_lock(out, "impatient"):
            pass
    t0 = time.monotonic()
    threading.Timer(1.0, holder.stdin.close).start()  # the holder finishes in a second
    with out_lock(out, "patient", wait=30):
        assert time.monotonic() - t0 >= 0.9
        assert read_holder(os.path.realpath(lock_path(out)))["command"] == "patient"
    holder.wait(timeout=30)


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    out = str(tmp_path / "out")
    with out_lock(out, "outer") as outer:
        with out_lock(out, "inner") as inner:
            assert inner is outer
        assert read_holder(os.path.realpath(lock_path(out)))["command"] == "outer"  # still held
    assert read_holder(os.path.realpath(lock_path(out))) is None


@pytest.mark.slow
def test_dagster_steps_wait_for_the_lock_and_then_refuse_naming_the_holder(corpus, monkeypatch):
    from dagster import AssetSelection, DagsterInstance, materialize

    from dagster_project.definitions import build_defs, make_resources

    cfg, out = corpus
    monkeypatch.setenv("SOCIALCORPUS_LOCK_WAIT_S", "1")
    d = build_defs(cfg, secret="test-secret-not-for-production")
    assets = list(d.assets)
    raw = next(a for a in assets if a.partitions_def is not None)
    resources = make_resources(cfg, secret="test-secret-not-for-production")
    instance = DagsterInstance.ephemeral()

    def ingest():
        return materialize(assets, instance=instance, resources=resources, partition_key="telegram",
                           selection=AssetSelection.assets(raw.key), raise_on_error=False)

    def dedup():
        return materialize(assets, instance=instance, resources=resources, raise_on_error=False,
                           selection=AssetSelection.assets("messages"))

    holder = hold(out)
    try:
        for run in (ingest, dedup):
            r = run()
            assert not r.success
            errors = [str(e.event_specific_data.error) for e in r.all_events if e.is_step_failure]
            assert errors and f"pid {holder.pid}" in errors[0] and "holder under test" in errors[0], errors
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert ingest().success and dedup().success


_BUILD_KILLED_AFTER_TRAIN = r"""
import sys, time
from pipelines import cli
from pipelines.stages import shards

real_write_split = shards.write_split_rows  # every layout writes a split through it

def write_split(*args, split, **kw):
    man = real_write_split(*args, split=split, **kw)
    if split == "train":  # the train manifest is published; validation and test are not yet
        print("train written", flush=True)
        time.sleep(120)
    return man

shards.write_split_rows = write_split
sys.exit(cli.main(["build", "--config", sys.argv[1], "--json"]))
"""


@pytest.mark.slow
def test_a_build_killed_after_the_train_manifest_is_refused_by_the_trainer_until_rebuilt(corpus):
    """The issue's case: a second build refuses while the first runs; the first is killed with
    only the train manifest written; the trainer refuses it; the next build repairs and completes."""
    from trainer import data

    cfg, out = corpus
    p = subprocess.Popen([sys.executable, "-c", _BUILD_KILLED_AFTER_TRAIN, cfg], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout.readline().strip() == "train written"
    second = socialcorpus("build", "--config", cfg)  # two real builds on one out: the second refuses
    assert second.returncode == 2 and f"pid {p.pid} on host {socket.gethostname()}" in second.stderr, second.stderr
    os.kill(p.pid, signal.SIGKILL)  # a real kill -9 in the middle of the shards stage
    p.wait(timeout=30)
    train = storage.join(out, "shards", "train", "manifest.json")
    assert os.path.exists(train) and not os.path.exists(storage.join(out, "shards", "validation", "manifest.json"))
    with pytest.raises(ValueError, match="did not finish"):
        data.load_manifest(train)
    r = socialcorpus("build", "--config", cfg, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["recovered"]["stale_holder"]["pid"] == p.pid
    for split in ("train", "validation", "test"):
        data.load_manifest(storage.join(out, "shards", split, "manifest.json"))  # complete now: accepted
