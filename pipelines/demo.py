"""`make demo`: generate the synthetic dumps, build the whole corpus, train the tiny model briefly.

Prints a human summary on stderr as it goes and one JSON summary on stdout at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.demo")
    p.add_argument("--dir", default="demo", help="where the dumps, tables, shards and run go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--no-dagster", action="store_true", help="build with the CLI pipeline instead of Dagster")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    from pipelines import config as cfgmod
    from pipelines.sample import write_sample

    dumps = os.path.join(args.dir, "dumps")
    t0 = time.monotonic()
    sample = write_sample(dumps, seed=args.seed, scale=args.scale)
    _say(f"[demo] wrote sample dumps to {dumps} ({time.monotonic() - t0:.1f}s)")
    config_path = os.path.join(dumps, "corpus.toml")
    cfg = cfgmod.load(config_path)

    t0 = time.monotonic()
    if args.no_dagster:
        from pipelines.build import build
        from pipelines.context import RunContext

        summary = build(RunContext(cfg))
        how = "socialcorpus build (Polars engine)"
    else:
        from dagster_project.definitions import materialize_corpus

        summary = materialize_corpus(config_path)
        how = "Dagster (in-process materialisation of every asset)"
    _say(f"[demo] built the corpus through {how} in {time.monotonic() - t0:.1f}s")
    shards_dir = cfg.table_url("shards")
    _say(f"[demo] shards: {shards_dir}/<split>/manifest.json")

    result = {"sample": sample, "build": summary, "shards": shards_dir}
    manifest = os.path.join(shards_dir, "train", "manifest.json")
    if args.train_steps and os.path.exists(manifest):
        from trainer.train import train_demo

        run_dir = os.path.join(args.dir, "run")
        t0 = time.monotonic()
        trained = train_demo(manifest, run_dir, steps=args.train_steps)
        _say(f"[demo] trained the tiny preset for {args.train_steps} steps in {time.monotonic() - t0:.1f}s; "
             f"losses: {', '.join(f'{x:.3f}' for x in trained['losses'])}")
        result["train"] = trained
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
