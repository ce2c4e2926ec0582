"""`socialcorpus train ...` and `socialcorpus evaluate ...` (pipelines/cli.py hands argv here).

    socialcorpus train --data SHARDS/train/manifest.json --out RUN_DIR [--config FILE]
                       [--preset tiny|gpt125m] [--steps N] [--device auto|cpu|cuda] [--resume]
    socialcorpus evaluate --run RUN_DIR --data SHARDS/validation/manifest.json [--out FILE.json]

Under torchrun: ``torchrun --nproc_per_node=8 -m trainer.cli train ...``. Step lines go to
stderr; the final summary is one JSON object on stdout, as for every socialcorpus command.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from trainer.config import PRESETS


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _default(fn, name: str):
    """A parameter's default, read from the function that uses it (so it is written once)."""
    return inspect.signature(fn).parameters[name].default


def parser() -> argparse.ArgumentParser:
    """The `train` and `evaluate` argument parser."""
    from trainer.evaluate import evaluate as _evaluate

    p = argparse.ArgumentParser(prog="socialcorpus", description="Train and evaluate SociaLLM on token shards.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on a split's shards")
    t.add_argument("--data", required=True, help="the train split's manifest.json (path or fsspec URL)")
    t.add_argument("--out", required=True, help="run folder: checkpoint, log.jsonl")
    t.add_argument("--config", help="TOML file: preset, [train], [model] (default: the preset alone)")
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="overrides the file's preset (without a file: tiny)")
    t.add_argument("--steps", type=int, help="max_steps, the schedule's length (default: the preset's "
                   + ", ".join(f"{k} {v.max_steps}" for k, v in sorted(PRESETS.items())) + ")")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (the default): cuda when a GPU is present, else cpu")
    t.add_argument("--resume", action="store_true", help="continue exactly from RUN_DIR/ckpt.pt (default: start afresh)")
    t.add_argument("--val-data", help="validation manifest (default: ../validation/manifest.json if present)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (default: eager)")
    e = sub.add_parser("evaluate", help="bits per byte and the history ablation on a split")
    e.add_argument("--run", required=True, help="a run folder written by `socialcorpus train`")
    e.add_argument("--data", required=True, help="a split's manifest.json (validation or test)")
    e.add_argument("--out", help="write the results as JSON here (default: print them only)")
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default=_default(_evaluate, "device"),
                   help="auto (the default): cuda when a GPU is present, else cpu")
    e.add_argument("--batch-size", type=int, default=_default(_evaluate, "batch_size"), help=f"examples per batch (default: {_default(_evaluate, 'batch_size')})")
    e.add_argument("--max-batches", type=int, default=_default(_evaluate, "max_batches"),
                   help="evaluate at most this many batches (default: the whole split)")
    return p


def main(argv: list[str] | None = None) -> int:
    from trainer.evaluate import evaluate as _evaluate

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        if args.command == "train":
            from trainer import config as cfgmod
            from trainer.train import sibling_validation, train

            cfg = cfgmod.load(args.config, args.preset)
            if args.steps:
                cfg = cfgmod.replace(cfg, max_steps=args.steps)
            if args.compile:
                cfg = cfgmod.replace(cfg, compile=True)
            result = train(cfg, args.data, args.out, val_manifest=args.val_data or sibling_validation(args.data),
                           device=args.device, resume=args.resume, log=_log)
        else:
            result = _evaluate(args.run, args.data, out=args.out, device=args.device, batch_size=args.batch_size,
                              max_batches=args.max_batches, log=_log)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        sys.stderr.write(f"socialcorpus {args.command}: error: {err}\n")
        return 2
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
