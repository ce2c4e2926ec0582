"""Spark engine scaling: the same generated corpus built with `local[1]` and `local[2]`.

    python -m benchmarks.bench_spark [--scale 4] [--until histories]

Each master runs in its own process (a JVM has one SparkContext, and its master cannot be
changed), on the same dumps (`pipelines.sample.write_sample`). Prints the seconds per
stage for both, which stages ran on Spark, and the speed-up of the Spark stages. The
first stage of each process also pays for starting Python workers; the session start
itself is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SECRET = "bench-secret-not-for-production"


def _child(dumps: str, out: str, master: str, until: str | None) -> dict:
    from pipelines.core import config as cfgmod
    from pipelines.core.settings import SparkConfig
    from pipelines.build import build
    from pipelines.core.context import RunContext
    from pipelines.engines.spark import session

    cfg = cfgmod.load(os.path.join(dumps, "corpus.toml"))
    sections = {**cfg.sections, "spark": {"master": master, "shuffle_partitions": 8,
                                          "conf": {"spark.ui.enabled": "false", "spark.driver.memory": "4g"}}}
    cfg = cfg.with_overrides(out=out, engine="spark", sections=sections)
    t0 = time.monotonic()
    spark = session(cfg.section(SparkConfig))
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(1).count()
    started = time.monotonic() - t0
    summary = build(RunContext(cfg, secret_value=SECRET), until=until)
    stages = {k: {"seconds": v["seconds"], "engine": v.get("engine"), "rows_out": v.get("rows_out")}
              for k, v in summary.items() if isinstance(v, dict) and "seconds" in v}
    spark.stop()
    return {"master": master, "session_start_s": round(started, 2), "stages": stages}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_spark")
    p.add_argument("--scale", type=int, default=4, help="write_sample scale (1: a few thousand messages)")
    p.add_argument("--until", default=None, help="stop after this stage")
    p.add_argument("--child", nargs=3, metavar=("DUMPS", "OUT", "MASTER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child, args.until)))
        return 0

    from pipelines.sample import write_sample

    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        dumps = os.path.join(tmp, "dumps")
        sample = write_sample(dumps, seed=0, scale=args.scale)
        print(f"corpus: write_sample(scale={args.scale}): {sample['records_total']} records")
        results = []
        for master in ("local[1]", "local[2]"):
            cmd = [sys.executable, "-m", "benchmarks.bench_spark", "--child", dumps,
                   os.path.join(tmp, master.replace("[", "_").replace("]", "")), master]
            if args.until:
                cmd += ["--until", args.until]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-4000:])
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    one, two = results
    print(f"{'stage':<12} {'engine':<7} {'local[1] s':>11} {'local[2] s':>11} {'speed-up':>9}")
    tot = {"local[1]": 0.0, "local[2]": 0.0}
    for name, a in one["stages"].items():
        b = two["stages"][name]
        if a["engine"] == "spark":
            tot["local[1]"] += a["seconds"]
            tot["local[2]"] += b["seconds"]
        print(f"{name:<12} {a['engine']:<7} {a['seconds']:>11.2f} {b['seconds']:>11.2f} "
              f"{a['seconds'] / max(b['seconds'], 1e-9):>8.2f}x")
    print(f"{'spark stages':<20} {tot['local[1]']:>11.2f} {tot['local[2]']:>11.2f} "
          f"{tot['local[1]'] / max(tot['local[2]'], 1e-9):>8.2f}x")
    print(f"session start: local[1] {one['session_start_s']} s, local[2] {two['session_start_s']} s (not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
