"""`make demo` run once per test process, into a temporary folder and Dagster home.

``pipelines.demo.main`` is what ``make demo`` runs; here without training (the trainer has
its own tests) so the run takes well under a minute. Shared by tests/test_demo.py and the
browser test, which serves the same Dagster home.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoRun:
    dir: Path          # --dir: dumps, tables, shards, demo_summary.json
    home: Path         # --dagster-home: the persistent instance the UI serves
    config: Path       # dumps/corpus.toml
    stdout: str        # the human summary


_RUNS: dict[str, DemoRun] = {}


def run_demo(root: Path) -> DemoRun:
    key = str(root)
    if key not in _RUNS:
        from pipelines.demo import main

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["--dir", str(root / "demo"), "--dagster-home", str(root / "dagster_home"),
                       "--train-steps", "0"])
        assert rc == 0, buf.getvalue()
        _RUNS[key] = DemoRun(root / "demo", root / "dagster_home", root / "demo" / "dumps" / "corpus.toml",
                             buf.getvalue())
    return _RUNS[key]


def shared_demo(tmp_path_factory) -> DemoRun:
    """The process's demo run (the first module that asks makes it)."""
    if not _RUNS:
        return run_demo(tmp_path_factory.mktemp("demo_run"))
    return next(iter(_RUNS.values()))
