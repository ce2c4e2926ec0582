"""One writer per output folder: the lock every command that writes ``OUT`` takes first.

``socialcorpus build``, ``socialcorpus ingest --out`` and every Dagster step take
:func:`out_lock` on their ``out`` before writing anything. Two builds on one ``out`` would
otherwise race: their temporary folders and shard files interleave, one dies on a vanished
``.tmp-`` file, and a manifest can name shards the other run deleted (docs/failure-model.md).

The lock is ``filelock.FileLock`` (``flock(2)``; the kernel releases it when its process
dies, so a killed build never leaves the folder locked). Next to it a JSON holder record
(pid, host, process start, when, command) lets a refused run say who holds the lock. A
holder record left behind by a process that died without releasing is reported as stale
and taken over with a warning. Whoever holds the lock also cleans what killed runs left
(:func:`pipelines.core.storage.recover`), which is safe only because no other run is writing.

For a local ``out`` the lock lives in ``OUT/.socialcorpus-lock``. Object stores have no
lock primitive, so for any other URL (``s3://``, ``memory://``) the lock file is local, in
``$TMPDIR/socialcorpus-locks/``: it keeps builds on one host apart, not builds on
different hosts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
from typing import Iterator

import filelock
import fsspec

LOCK_NAME = ".socialcorpus-lock"
HOLDER_SUFFIX = ".json"
# How long a Dagster step waits for another step of the same `out` (the multiprocess
# executor runs independent steps at once; they take turns instead of failing).
WAIT_ENV = "SOCIALCORPUS_LOCK_WAIT_S"
DEFAULT_STEP_WAIT_S = 6 * 3600.0
_REPORT_EVERY_S = 30.0

_HELD: dict[str, list] = {}  # lock path -> [FileLock, depth, report], for re-entry within this process
_HELD_GUARD = threading.Lock()


class OutLockedError(RuntimeError):
    """Another process holds the lock on this ``out``; the message names it and what to do."""


def step_wait_s() -> float:
    """Seconds a Dagster step waits for the lock: ``$SOCIALCORPUS_LOCK_WAIT_S``, default 6 h."""
    value = os.environ.get(WAIT_ENV)
    try:
        return float(value) if value else DEFAULT_STEP_WAIT_S
    except ValueError:
        raise ValueError(f"${WAIT_ENV} = {value!r}: expected a number of seconds") from None


def lock_path(out: str) -> str:
    """The lock file for ``out``: inside it when local, else a per-URL file in the temp dir."""
    fs, path = fsspec.core.url_to_fs(out)
    if type(fs).__name__ == "LocalFileSystem":
        return os.path.join(path, LOCK_NAME)
    key = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "socialcorpus-locks", f"{key}{LOCK_NAME}")


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # field 22; the command name (field 2) may hold spaces, so split after its ")"
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` on this host runs (and, if ``start`` is known, is the same process)."""
    if pid <= 0:  # os.kill(0 or -1, …) would address a whole process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    if start is not None:
        now = _process_start(pid)
        return now is None or now == start
    return True


def read_holder(lock: str) -> dict | None:
    try:
        with open(lock + HOLDER_SUFFIX, encoding="utf-8") as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def describe(holder: dict | None) -> str:
    if not holder:
        return "a process that has not recorded itself yet"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}, "
            f"command {holder.get('command')!r}")


def _write_holder(lock: str, command: str) -> dict:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command}
    tmp = f"{lock}{HOLDER_SUFFIX}.{os.getpid()}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(holder, f)
    os.replace(tmp, lock + HOLDER_SUFFIX)
    return holder


def _refusal(out: str, lock: str) -> OutLockedError:
    holder = read_holder(lock)
    msg = f"{out}: another run is writing this output folder: {describe(holder)}. "
    if holder and holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", -1)),
                                                                                 holder.get("process_start")):
        msg += (f"That process has exited but something it started still holds {lock} open; find it with "
                f"`fuser {lock}` and stop it, then run again.")
    else:
        msg += "Wait for it to finish (or stop it), then run again; two runs on one `out` would corrupt it."
    return OutLockedError(msg)


def _take(out: str, lock: str, wait: float, log: logging.Logger) -> filelock.FileLock:
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    fl = filelock.FileLock(lock, thread_local=False)
    if wait <= 0:
        try:
            fl.acquire(timeout=0)
        except filelock.Timeout:
            raise _refusal(out, lock) from None
        return fl
    remaining = wait
    while True:
        step = min(_REPORT_EVERY_S, remaining)
        try:
            fl.acquire(timeout=step)
            return fl
        except filelock.Timeout:
            remaining -= step
            if remaining <= 0:
                raise _refusal(out, lock) from None
            log.warning("%s: waiting for the output lock held by %s", out, describe(read_holder(lock)))


@contextlib.contextmanager
def out_lock(out: str, command: str | None = None, *, wait: float = 0.0,
             log: logging.Logger | None = None) -> Iterator[dict]:
    """Hold the write lock on ``out`` for the ``with`` block; yield what recovery did.

    ``wait`` = 0 refuses at once if another process holds it (:class:`OutLockedError`, naming
    the holder); > 0 waits up to that many seconds, logging the holder now and then.
    Re-entrant within one process. On first entry, a holder record left by a dead process is
    reported and replaced, and the leftovers of killed runs are recovered
    (:func:`pipelines.core.storage.recover`); the yielded dict says what was restored or removed.
    """
    log = log or logging.getLogger("socialcorpus.lock")
    command = command or " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
    lock = os.path.realpath(lock_path(out))
    with _HELD_GUARD:
        held = _HELD.get(lock)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield held[2]  # what the outermost entry recovered
        finally:
            with _HELD_GUARD:
                held[1] -= 1
        return
    fl = _take(out, lock, wait, log)
    try:
        previous = read_holder(lock)
        stale = None
        if previous is not None:
            # A record survives only when its process did not reach release: it died.
            stale = previous
            same_host = previous.get("host") == socket.gethostname()
            state = ("is no longer running" if same_host and not pid_alive(int(previous.get("pid", -1)),
                                                                            previous.get("process_start"))
                     else "did not release it")
            log.warning("%s: taking over a stale output lock: its holder (%s) %s; cleaning what it left",
                        out, describe(previous), state)
        _write_holder(lock, command)
        report = {"restored": [], "removed": [], "stale_holder": stale}
        with _HELD_GUARD:
            _HELD[lock] = [fl, 1, report]
        from pipelines.core import storage  # polars & co. only once a run really writes

        report.update(storage.recover(out))
        for p in report["restored"]:
            log.warning("%s: restored the previous table %s (a run died while replacing it)", out, p)
        if report["removed"]:
            log.warning("%s: removed %d leftover(s) of killed runs: %s", out, len(report["removed"]),
                        ", ".join(report["removed"][:5]) + (" …" if len(report["removed"]) > 5 else ""))
        yield report
    finally:
        with _HELD_GUARD:
            _HELD.pop(lock, None)
        with contextlib.suppress(OSError):
            os.remove(lock + HOLDER_SUFFIX)
        fl.release()
