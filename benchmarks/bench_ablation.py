"""The history ablation on real data. `python -m benchmarks.bench_ablation [--tokens N] [--out FILE.json]`.

Builds every real sample in ``../shared/data/real`` (read in place) with the default corpus
configuration, trains a preset on the train split for a fixed budget of tokens (window and
history tokens together, as the trainer counts them), evaluates on the validation split and
prints the ablation: bits per byte per condition, the gain over ``none`` with 95% intervals
over users, overall, per platform (the target message's) and per Diplomacy deception label.
Writes the whole result as JSON (default ``benchmarks/out/ablation.json``).

The default budget (6M tokens) is sized to take about 20 minutes on 2 idle CPU cores with the
tiny preset at one thread (measured 5-9k tokens/s, docs/trainer.md); ``--tokens`` scales it.
The tables it builds and the run go to a temporary folder unless ``--work`` names one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._inputs import REAL, real_sources

DEFAULT_TOKENS = 6_000_000
SECRET = "bench-ablation-secret-not-for-production"  # pseudonyms only need to be stable within the run


def build_real(work: str, log) -> dict:
    """Every stage over the real samples with default settings; returns {split: manifest path}."""
    from pipelines.build import build
    from pipelines.core.config import from_dict
    from pipelines.core.context import RunContext

    cfg = from_dict({"out": f"{work}/out", "sources": real_sources(REAL)}, base_dir=work)
    t0 = time.monotonic()
    summary = build(RunContext(cfg, secret_value=SECRET))
    log(f"built the real corpus in {time.monotonic() - t0:.0f}s: {summary['shards']['splits']}")
    return {s: cfg.table_url("shards", s, "manifest.json") for s in ("train", "validation", "test")}


def steps_for(manifest: str, cfg, tokens: int) -> int:
    """Optimizer steps that consume about ``tokens`` tokens, from the split's mean tokens per example
    after the collate limits (window ``block_size + 1``, each stream ``history_size``)."""
    import pyarrow.compute as pc

    from pipelines.stages import shards as SH
    from schemas import SHARD as S

    t = SH.read_flat(manifest)  # either layout, as flat rows
    lens = [np.minimum(pc.list_value_length(t.column(c)).to_numpy(), lim) for c, lim in
            ((S.window_tokens, cfg.model.block_size + 1), (S.own_tokens, cfg.model.history_size),
             (S.other_tokens, cfg.model.history_size))]
    mean = float(sum(lens).mean())
    return max(1, math.ceil(tokens / (mean * cfg.batch_size * cfg.grad_accum)))


def platform_of(message_id: str) -> str:
    return message_id.split(":", 1)[0]  # message ids are "<platform>:..." (docs/schema.md)


def breakdown(pe: dict, n_boot: int) -> dict:
    """Per platform: the ablation on that platform's validation examples."""
    from trainer.evaluate import summarise

    users = np.array(pe["self_id"])
    plat = np.array([platform_of(m) for m in pe["target_message_id"]])
    out = {}
    for p in sorted(set(plat)):
        mask = plat == p
        out[p] = {"examples": int(mask.sum()), "users": len(np.unique(users[mask])),
                  "conditions": summarise(pe["nll"], pe["target_bytes"], pe["target_role"], users, mask, n_boot)}
    return out


def print_table(title: str, conds: dict, log) -> None:
    log(f"\n{title}")
    log(f"{'condition':<12} {'bpb':>7} {'gain':>8}  gain 95% CI (users)")
    for name, r in conds.items():
        ci = "" if r["gain_ci95"] is None else f"[{r['gain_ci95'][0]:+.4f}, {r['gain_ci95'][1]:+.4f}]"
        log(f"{name:<12} {r['bpb']:7.4f} {r['gain_vs_none']:+8.4f}  {ci}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help="training budget in tokens (default 6M)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription on 2 cores)")
    p.add_argument("--eval-batches", type=int, help="cap on validation batches of 16 (default: the whole split)")
    p.add_argument("--work", help="keep the tables and the run here (default: a temporary folder)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "ablation.json"))
    args = p.parse_args(argv)
    log = print
    if not REAL.is_dir():
        log(f"real samples not found at {REAL}; set SOCIALCORPUS_REAL_DATA")
        return 1
    torch.set_num_threads(args.threads)
    from trainer import config as cfgmod
    from trainer.evaluate import evaluate
    from trainer.train import train

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or tmp
        os.makedirs(work, exist_ok=True)
        manifests = build_real(work, log)
        cfg = cfgmod.PRESETS[args.preset]
        steps = steps_for(manifests["train"], cfg, args.tokens)
        cfg = cfgmod.replace(cfg, max_steps=steps, warmup_steps=min(cfg.warmup_steps, max(1, steps // 10)))
        log(f"training preset {args.preset} for {steps} steps (about {args.tokens:,} tokens) on the CPU")
        t0 = time.monotonic()
        every = max(1, steps // 20)
        tr = train(cfg, manifests["train"], f"{work}/run", device="cpu",
                   log=lambda s: log(s) if not s.startswith("step ") or int(s.split()[1].split("/")[0]) % every == 0
                   else None)
        train_s = time.monotonic() - t0
        log(f"trained in {train_s:.0f}s, {tr['tokens_per_s']:,.0f} tokens/s, final loss {tr['final_loss']:.4f}")
        t0 = time.monotonic()
        ev = evaluate(f"{work}/run", manifests["validation"], device="cpu", max_batches=args.eval_batches,
                      per_example=True, log=log)
        eval_s = time.monotonic() - t0
        pe = ev.pop("per_example")
        ev["by_platform"] = breakdown(pe, 200)
        for plat, r in ev["by_platform"].items():
            print_table(f"platform {plat}: {r['examples']} examples, {r['users']} users", r["conditions"], log)
        from trainer import data

        cfg = cfgmod.replace(cfg, vocab_size=data.load_manifest(manifests["train"]).vocab_size)  # as trained
        result = {"tokens_budget": args.tokens, "steps": steps, "preset": args.preset, "train_seconds": round(train_s),
                  "eval_seconds": round(eval_s), "tokens_per_s": tr["tokens_per_s"], "final_loss": tr["final_loss"],
                  "config": cfgmod.to_dict(cfg), **ev}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)
        log(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
