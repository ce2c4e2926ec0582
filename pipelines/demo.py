"""`make demo`: generate the synthetic dumps, build the whole corpus, train the tiny model briefly.

The corpus is materialised through Dagster into the project's persistent Dagster instance
(``.dagster_home/``, the one ``make ui`` serves), so the UI opened afterwards shows every
asset materialised with its metadata, plots and checks, and the demo's runs.

Progress goes to stderr; the end is a short human summary on stdout (stages, quarantine,
where the shards, the tokenizer and the JSON are, what to try next). The full JSON
summary is written to ``DIR/demo_summary.json`` and, with ``--json``, printed on stdout
instead of the human summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

SUMMARY_FILE = "demo_summary.json"
UI_URL = "http://127.0.0.1:3000"


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def build_through_dagster(config_path: str, dagster_home: str | None = None, log_level: str = "INFO") -> dict:
    """Materialise every asset of the corpus at ``config_path`` into the persistent instance at
    ``dagster_home`` (default the project's ``.dagster_home``); returns materialize_corpus's summary."""
    from dagster_project.definitions import materialize_corpus
    from dagster_project.instance import open_instance

    with open_instance(dagster_home) as instance:
        return materialize_corpus(config_path, instance=instance, log_level=log_level)


def _train_steps_default() -> int:
    """train_demo's own default; 0 when the `train` extra (torch) is not installed."""
    try:
        from trainer.train import train_demo
    except ImportError:
        return 0
    from pipelines.cli import _default

    return _default(train_demo, "steps")


def _socialcorpus_command() -> str:
    """How to call `socialcorpus` from here: the venv's script when it is not on PATH."""
    import shutil

    script = os.path.join(os.path.dirname(sys.executable), "socialcorpus")
    if shutil.which("socialcorpus") == script or not os.path.exists(script):
        return "socialcorpus"
    rel = os.path.relpath(script)
    return rel if not rel.startswith("..") else script


def main(argv: list[str] | None = None) -> int:
    from dagster_project.instance import HOME
    from pipelines.cli import _Help, _default
    from pipelines.sample import write_sample

    p = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__.splitlines()[0],
                                formatter_class=_Help)
    p.add_argument("--dir", default="demo", help="where the dumps, tables, shards and run go")
    p.add_argument("--seed", type=int, default=_default(write_sample, "seed"), help="seed of the synthetic dumps")
    p.add_argument("--scale", type=int, default=_default(write_sample, "scale"),
                   help="multiplies the number of threads and messages")
    p.add_argument("--train-steps", type=int, default=_train_steps_default(),
                   help="steps of the tiny model (0: no training)")
    p.add_argument("--no-dagster", action="store_true", help="build with the CLI pipeline instead of Dagster")
    p.add_argument("--dagster-home", default=str(HOME),
                   help="the Dagster instance the build is recorded in (the one `make ui` serves)")
    p.add_argument("--json", action="store_true", help="print the full JSON summary on stdout instead")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: every Dagster event; -vv: also the libraries' INFO logs")
    args = p.parse_args(argv)

    from pipelines.core import config as cfgmod
    from pipelines import report
    from pipelines.core.progress import configure_logging

    configure_logging(args.verbose, default_level=logging.INFO)
    dumps = os.path.join(args.dir, "dumps")
    t0 = time.monotonic()
    sample = write_sample(dumps, seed=args.seed, scale=args.scale)
    _say(f"[demo] wrote sample dumps to {dumps} ({time.monotonic() - t0:.1f}s)")
    config_path = os.path.join(dumps, "corpus.toml")
    cfg = cfgmod.load(config_path)

    t0 = time.monotonic()
    if args.no_dagster:
        from pipelines.build import build
        from pipelines.core.context import RunContext

        summary = build(RunContext(cfg))
        how = "socialcorpus build (Polars engine)"
    else:
        summary = build_through_dagster(config_path, args.dagster_home, "DEBUG" if args.verbose else "INFO")
        how = f"Dagster (every asset, recorded in {args.dagster_home})"
    _say(f"[demo] built the corpus through {how} in {time.monotonic() - t0:.1f}s")

    result = {"sample": sample, "build": summary, "shards": cfg.table_url("shards")}
    manifest = os.path.join(cfg.table_url("shards"), "train", "manifest.json")
    trained_line = None
    if args.train_steps and os.path.exists(manifest):
        from trainer.train import train_demo

        run_dir = os.path.join(args.dir, "run")
        t0 = time.monotonic()
        trained = train_demo(manifest, run_dir, steps=args.train_steps, log=_say)
        losses = trained["losses"]
        trained_line = (f"trained the tiny preset for {args.train_steps} steps in {time.monotonic() - t0:.1f}s "
                        f"(loss {losses[0]:.3f} -> {losses[-1]:.3f}); run in {run_dir}")
        result["train"] = trained
    json_path = report.write_json(result, os.path.join(args.dir, SUMMARY_FILE))
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return 0
    steps = [] if args.no_dagster else [f"make ui   # then open {UI_URL}: every asset, its metadata and checks"]
    steps += report.next_commands(cfg.out, prog=_socialcorpus_command())
    sys.stdout.write(report.render(summary, cfg.out, json_path, steps, title="demo corpus built",
                                   notes=[trained_line] if trained_line else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
