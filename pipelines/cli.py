"""The `socialcorpus` command line. Every command prints one JSON object on stdout; logs go to stderr."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.sources import FORMATS, SourceError


def _print(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def cmd_sample(args) -> int:
    from pipelines.sample import write_sample

    _print(write_sample(args.out, seed=args.seed, scale=args.scale))
    return 0


def cmd_ingest(args) -> int:
    from pipelines import storage
    from pipelines.ingest import ingest

    stats = ingest(args.format, args.paths, storage.join(args.out, "messages_raw", args.format),
                   storage.join(args.out, "quarantine", args.format))
    _print(stats.summary())
    return 0


def cmd_build(args) -> int:
    from pipelines import config as cfgmod
    from pipelines.build import build
    from pipelines.context import RunContext

    cfg = cfgmod.load(args.config)
    if args.engine:
        cfg = cfg.with_overrides(engine=args.engine)
    _print(build(RunContext(cfg), until=args.until))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "evaluate"):
        from trainer import cli as trainer_cli

        return trainer_cli.main(argv)
    p = argparse.ArgumentParser(prog="socialcorpus", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="write the synthetic demo dumps in every format")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=int, default=1, help="multiplies the number of threads and messages")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("ingest", help="read dumps of one format into messages_raw and quarantine")
    s.add_argument("format", choices=FORMATS)
    s.add_argument("paths", nargs="+", help="files, folders, globs or fsspec URLs")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("build", help="run every stage on the corpus described by a config file")
    s.add_argument("--config", required=True)
    s.add_argument("--engine", choices=("polars", "spark"), help="override the config's engine")
    s.add_argument("--until", help="stop after this stage")
    s.set_defaults(func=cmd_build)

    sub.add_parser("train", help="train SociaLLM on shards (see `socialcorpus train --help`)")
    sub.add_parser("evaluate", help="evaluate a trained run (see `socialcorpus evaluate --help`)")

    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except (SourceError, ValueError, RuntimeError, FileNotFoundError) as e:
        sys.stderr.write(f"socialcorpus {args.command}: error: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
