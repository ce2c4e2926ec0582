"""The `socialcorpus` command line.

`build` ends with a short human summary on stdout (a table of stages, the quarantine, where
the shards and the tokenizer are, what to try next) and writes its full JSON summary to a
file (default ``OUT/build_summary.json``); with ``--json`` it prints that JSON object on
stdout instead, as it always did, for scheduled jobs. `sample` and `ingest` print one
JSON object on stdout. Logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from pipelines.sources import FORMATS, SourceError


def _print(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def cmd_sample(args) -> int:
    from pipelines.sample import write_sample

    _print(write_sample(args.out, seed=args.seed, scale=args.scale, signal=args.signal))
    return 0


def cmd_ingest(args) -> int:
    from pipelines.core import storage
    from pipelines.stages.ingest import ingest
    from pipelines.core.lock import out_lock

    with out_lock(args.out):  # refused (exit 2, naming the holder) while another run writes `out`
        stats = ingest(args.format, args.paths, storage.join(args.out, "messages_raw", args.format),
                       storage.join(args.out, "quarantine", args.format))
    _print(stats.summary())
    return 0


def cmd_build(args) -> int:
    from pipelines.core import config as cfgmod
    from pipelines import report
    from pipelines.core import storage
    from pipelines.build import build
    from pipelines.core.context import RunContext
    from pipelines.core.lock import out_lock

    cfg = cfgmod.load(args.config)
    if args.engine:
        cfg = cfg.with_overrides(engine=args.engine)
    if args.set:
        cfg = cfg.with_settings(args.set)
    cfg.check()  # every section's settings, before anything runs
    with out_lock(cfg.out):  # the summary file is part of `out`: written under the same lock
        summary = build(RunContext(cfg), until=args.until)
        path = report.write_json(summary, args.summary_file or storage.join(cfg.out, report.SUMMARY_FILE))
    if args.json:
        _print(summary)
    else:
        sys.stdout.write(report.render(summary, cfg.out, path, report.next_commands(cfg.out)))
    return 0


def cmd_show_example(args) -> int:
    from pipelines.show_example import show

    sys.stdout.write(show(args.data, index=args.index, example_id=args.example_id, tokenizer_url=args.tokenizer,
                          markdown=args.markdown, width=args.width))
    return 0


def cmd_export_flat(args) -> int:
    import logging

    from pipelines.core.lock import out_lock
    from pipelines.stages.shards import export_flat

    source_out = args.shards.rstrip("/").rsplit("/", 1)[0] if "/" in args.shards.rstrip("/") else "."
    # The build's OUT (no build rewrites the shards while they are read) and the copy's folder
    # (one writer): both refused, naming the holder, while another run holds them.
    with out_lock(source_out, "export-flat (reading)"), out_lock(args.out, "export-flat"):
        manifests = export_flat(args.shards, args.out, log=logging.getLogger("socialcorpus.shards"))
    summary = {"out": args.out, "schema_version": 2,
               "splits": {k: {"rows": m["rows"], "tokens": m["tokens"], "shards": len(m["shards"]),
                              "bytes": sum(s["bytes"] for s in m["shards"])} for k, m in manifests.items()}}
    if args.json:
        _print(summary)
    else:
        for k, v in summary["splits"].items():
            sys.stdout.write(f"{k}: {v['rows']:,} rows, {v['tokens']:,} tokens, {v['shards']} files, "
                             f"{v['bytes']:,} bytes\n")
        sys.stdout.write(f"flat shards (schema version 2): {args.out}/<split>/manifest.json\n")
    return 0


def _default(fn, name: str):
    """A parameter's default, read from the function that uses it (so it is written once)."""
    return inspect.signature(fn).parameters[name].default


def _shown(value) -> str:
    """A default as `--set` would take it (TOML; text unquoted)."""
    if value is None:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)


def settings_help() -> str:
    """The `build --set` keys, listed from the section models (pipelines/core/settings.py)."""
    from pipelines.core.config_docs import allowed, type_name
    from pipelines.core.settings import ALIASES, SECTIONS

    lines = ["settings for --set SECTION.KEY=VALUE (defaults shown; docs/configuration.md explains each):"]
    for name, model in SECTIONS.items():
        old = [a for a, n in ALIASES.items() if n == name]
        lines.append(f"  [{name}]" + (f" (old name: {', '.join(old)})" if old else ""))
        for key, f in model.model_fields.items():
            rule = allowed(f)
            lines.append(f"    {name}.{key}={_shown(f.get_default(call_default_factory=True))}  "
                         f"({type_name(f.annotation)}{', ' + rule if rule else ''})")
    return "\n".join(lines)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless the help already says what the default is."""

    def _get_help_string(self, action):
        h = action.help or ""
        if ("default" in h or action.required or not action.option_strings
                or action.default is None or action.default is False or action.default == argparse.SUPPRESS):
            return h
        return h + " (default: %(default)s)"


class _BuildHelp(_Help, argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's settings listing as written (one key a line)."""


def parser() -> argparse.ArgumentParser:
    """The `socialcorpus` argument parser (`train` and `evaluate` are parsed by trainer/cli.py)."""
    from pipelines.sample import write_sample
    from pipelines.show_example import WIDTH
    from pipelines.stages import STAGES

    p = argparse.ArgumentParser(prog="socialcorpus", description=__doc__, formatter_class=_Help)
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: our progress lines (INFO) on stderr; -vv: also the libraries' INFO logs "
                        "(Presidio logs one line per message)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="write the synthetic demo dumps in every format", formatter_class=_Help)
    s.add_argument("--out", required=True, help="folder for the dumps and their corpus.toml")
    s.add_argument("--seed", type=int, default=_default(write_sample, "seed"), help="random seed of the generator")
    s.add_argument("--scale", type=int, default=_default(write_sample, "scale"),
                   help="multiplies the number of threads and messages")
    s.add_argument("--signal", action="store_true",
                   help="plant per-user habits only the history streams can predict (docs/sample.md)")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("ingest", help="read dumps of one format into messages_raw and quarantine",
                       formatter_class=_Help)
    s.add_argument("format", choices=FORMATS, help="the dump format")
    s.add_argument("paths", nargs="+", help="files, folders, globs or fsspec URLs")
    s.add_argument("--out", required=True, help="storage root: writes OUT/messages_raw/FORMAT and OUT/quarantine/FORMAT")
    s.set_defaults(func=cmd_ingest)

    from pipelines.core.config import ENGINES, CorpusConfig

    s = sub.add_parser("build", help="run every stage on the corpus described by a config file",
                       formatter_class=_BuildHelp, epilog=settings_help())
    s.add_argument("--config", required=True, help="the corpus TOML file (docs/configuration.md)")
    s.add_argument("--engine", choices=ENGINES, default=None, help="override the config file's `engine` (default: the file's, which defaults to "
                        f"{CorpusConfig.__dataclass_fields__['engine'].default})")
    s.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                   help="override one setting of the config file for this build (repeatable), e.g. --set histories.n=3; "
                        "VALUE is TOML (3, 0.2, true, [\"a\"]), unquoted text for a text key; checked like the file")
    s.add_argument("--until", choices=[st.name for st in STAGES], default=None,
                   help="stop after this stage (default: run every stage)")
    s.add_argument("--json", action="store_true",
                   help="print the full JSON summary on stdout instead of the human summary")
    s.add_argument("--summary-file", default=None,
                   help="where the full JSON summary is written (default: OUT/build_summary.json)")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("show-example", help="decode one shard row: the window, own and interlocutor streams",
                       formatter_class=_Help)
    s.add_argument("--data", required=True, help="a split's manifest: OUT/shards/<split>/manifest.json")
    pick = s.add_mutually_exclusive_group()
    pick.add_argument("--index", type=int, default=None,
                      help="row number in the split (default: the first row with context in all three streams)")
    pick.add_argument("--example-id", default=None, help="the example's example_id")
    s.add_argument("--tokenizer", default=None, help="tokenizer.json (default: OUT/tokenizer.json next to OUT/shards)")
    s.add_argument("--markdown", action="store_true", help="print Markdown (for docs and notes)")
    s.add_argument("--width", type=int, default=WIDTH, help="wrap message bodies at this many characters")
    s.set_defaults(func=cmd_show_example)

    s = sub.add_parser("export-flat", formatter_class=_Help,
                       help="write a flat copy (schema version 2: tokens in every row) of a build's shards")
    s.add_argument("--shards", required=True, help="a build's shards folder: OUT/shards")
    s.add_argument("--out", required=True, help="the folder (path or fsspec URL) for the flat copy")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(func=cmd_export_flat)

    sub.add_parser("train", help="train SociaLLM on shards (see `socialcorpus train --help`)")
    sub.add_parser("evaluate", help="evaluate a trained run (see `socialcorpus evaluate --help`)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "evaluate"):
        from trainer import cli as trainer_cli

        return trainer_cli.main(argv)
    args = parser().parse_args(argv)
    from pipelines.core.progress import configure_logging

    configure_logging(args.verbose)
    try:
        return args.func(args)
    except (SourceError, ValueError, RuntimeError, FileNotFoundError) as e:
        sys.stderr.write(f"socialcorpus {args.command}: error: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
