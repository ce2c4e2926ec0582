"""One stage alone on the tables of an earlier build: its seconds and its own peak RSS (issue #13).

    python -m benchmarks.bench_build --messages 1000000 --work /tmp/b1m     # the tables, once
    SOCIALCORPUS_SECRET=bench-build-fixed-secret \
        python -m benchmarks.stage_alone --config /tmp/b1m/dumps/corpus.toml shards

The stage runs in this fresh process (``pipelines.stages.run_stage``) and rewrites its own
output under the config's ``out``; the peak is the process's VmHWM, so it holds nothing an
earlier stage left resident (a stage's peak inside a build does: see docs/scale.md), plus the
summed peaks of any worker processes the stage started (``own_peak_rss_mb`` and
``worker_peak_rss_mb`` apart). Not part of
``make bench``: it needs a build's tables. ``bench_build`` uses the secret above by default, and
a stage that reads pseudonyms needs the same one.
"""

from __future__ import annotations

import argparse
import json
import time

from pipelines.core.config import load
from pipelines.core.context import RunContext
from pipelines.core.memory import peak_rss_mb, worker_peak_mb
from pipelines.stages import run_stage


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="the corpus TOML of the build whose tables the stage reads")
    p.add_argument("stage", help="the stage to run (ingest, dedup, …, shards)")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    result = run_stage(args.stage, RunContext(load(args.config)))
    own, workers = peak_rss_mb(), worker_peak_mb()
    figures = {"stage": args.stage, "seconds": round(time.monotonic() - t0, 1), "peak_rss_mb": round(own + workers),
               "own_peak_rss_mb": round(own), "worker_peak_rss_mb": round(workers),
               "rows_in": result.summary().get("rows_in"), "rows_out": result.summary().get("rows_out")}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
