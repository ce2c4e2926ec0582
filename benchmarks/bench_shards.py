"""Shard layouts, flat (schema version 2) against reference (schema version 3), issue #14.

    python -m benchmarks.bench_shards                      # the real samples and the demo corpus at --scale 50
    python -m benchmarks.bench_shards --scale 5 --skip-real --json /tmp/shards.json

Each corpus is built once with the default configuration (every stage; the real samples in
``../shared/data/real`` read in place, the demo corpus written by ``socialcorpus sample``), then
the shards stage alone (``pipelines.stages.shards.run``) is run again on the same built inputs,
twice per layout, flat (``--set shards.layout=flat``) first, then reference. Per corpus and layout:

1. stored tokens / message tokens: the flat layout stores the sum of every split manifest's
   ``tokens``, the reference layout its token store's; message tokens are the stage summary's
   ``message_tokens`` (every referenced message tokenised once). Target for the reference
   layout: <= 1.3x. Bytes on disk: every file under ``OUT/shards`` after that layout's run.
2. Shard writing time: the stage's wall time, best of 2, and the ratio reference / flat.
3. Loader throughput on the CPU: one ``trainer.data.ShardStream`` (one worker,
   ``num_workers=0``, the tiny preset's batch, block and history sizes) over the train split,
   best of 2 passes; tokens counted as the trainer counts them (window positions that are not
   ``<pad>``, history positions of a message: ``own_seg``/``other_seg`` >= 0). Against the tokens/s
   the tiny preset consumes, measured in the same run: ``trainer.train.train`` on the CPU for
   ``--steps`` steps (its ``tokens_per_s``, the mean per step after the first, counted the same
   way). Targets: loader >= 5x that consumption and >= 1M tokens/s per worker.

The token store is prepared (``trainer.data.prepare_store``) into a temporary
``SOCIALCORPUS_SHARD_CACHE``; its one-time cost is reported apart from the passes. The loader
passes and the training steps each run in a child process of their own (a fresh heap, as a
training job's loader has). Everything goes to a temporary folder under /tmp unless ``--work``
names one (the reference layout is left in place there). Prints one table per corpus and
writes every figure as JSON (default ``benchmarks/out/shards.json``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECRET = "bench-shards-secret-not-for-production"  # pseudonyms only need to be stable within the run
LAYOUTS = ("flat", "reference")
STORED_TARGET = 1.3      # reference layout: stored tokens <= 1.3x message tokens
LOADER_VS_TRAIN = 5.0    # loader tokens/s >= 5x the tiny preset's consumption
LOADER_MIN = 1_000_000   # and >= 1M assembled tokens/s per worker
OUT_JSON = Path(__file__).resolve().parent / "out" / "shards.json"


def log(msg: str) -> None:
    print(msg, flush=True)


# --- inputs ------------------------------------------------------------------------------------

def real_config(work: str):
    from benchmarks._inputs import REAL, real_sources
    from pipelines.core.config import from_dict

    return from_dict({"out": f"{work}/out", "sources": real_sources(REAL)}, base_dir=work)


def demo_config(work: str, scale: int):
    from pipelines.core.config import load
    from pipelines.sample import write_sample

    write_sample(work, seed=0, scale=scale)
    return load(os.path.join(work, "corpus.toml"))


def build_all(cfg) -> dict:
    """Every stage with the config as given (the default layout); returns the build summary."""
    from pipelines.build import build
    from pipelines.core.context import RunContext

    return build(RunContext(cfg, secret_value=SECRET))


# --- measurements ------------------------------------------------------------------------------

def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def write_shards(cfg, repeats: int = 2) -> dict:
    """The shards stage alone on the built inputs, ``repeats`` times; the best wall time and the
    last run's summary."""
    from pipelines.core.context import RunContext
    from pipelines.stages import shards

    times, summary = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        summary = shards.run(RunContext(cfg, secret_value=SECRET)).summary()
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "runs_s": times, "summary": summary}


def batch_tokens(batch: dict, pad_id: int) -> int:
    """Tokens a collated batch holds, as trainer/train.py counts them per step."""
    return (int((batch["idx"] != pad_id).sum()) + int((batch["own_seg"] >= 0).sum())
            + int((batch["other_seg"] >= 0).sum()))


def loader_rate(manifest_url: str, passes: int = 2, max_batches: int | None = None, profile: str | None = None
                ) -> dict:
    """Assembled tokens/s of one ShardStream worker over a split (best of ``passes`` epochs; only the
    time inside the stream's iterator counts). ``profile``: cProfile one more pass (not counted) into that file."""
    from trainer import data
    from trainer.config import PRESETS

    c = PRESETS["tiny"]
    m = data.load_manifest(manifest_url)
    t0 = time.perf_counter()
    stream = data.ShardStream(m, c.batch_size, seed=c.seed, num_workers=0, shuffle_block=c.shuffle_block,
                              block_size=c.model.block_size, history_size=c.model.history_size)
    setup_s = time.perf_counter() - t0                   # the reference layout prepares its store here, once
    runs = []
    for k in range(passes + bool(profile)):
        prof = cProfile.Profile() if k == passes else None   # an extra pass, not counted
        it, busy, tokens, batches = iter(stream), 0.0, 0, 0
        while max_batches is None or batches < max_batches:
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            batch = next(it, None)
            if prof:
                prof.disable()
            busy += time.perf_counter() - t0
            if batch is None:
                break
            tokens += batch_tokens(batch, m.pad_id)
            batches += 1
        if prof:
            prof.dump_stats(profile)
        else:
            runs.append({"seconds": busy, "tokens": tokens, "batches": batches,
                         "tokens_per_s": tokens / max(busy, 1e-9)})
    best = max(runs, key=lambda r: r["tokens_per_s"])
    return {**best, "setup_s": setup_s, "passes": runs, "layout": m.layout, "batch_size": c.batch_size,
            "block_size": c.model.block_size, "history_size": c.model.history_size}


def train_rate(manifest_url: str, out_dir: str, steps: int) -> dict:
    """Tokens/s the tiny preset consumes: ``steps`` real training steps on the CPU (trainer.train.train)."""
    import torch

    from trainer import config as cfgmod
    from trainer.train import train

    cfg = cfgmod.replace(cfgmod.PRESETS["tiny"], max_steps=steps, warmup_steps=min(5, steps))
    t0 = time.perf_counter()
    res = train(cfg, manifest_url, out_dir, device="cpu", log=lambda _line: None)
    return {"tokens_per_s": res["tokens_per_s"], "steps": res["steps"], "seconds": time.perf_counter() - t0,
            "torch_threads": torch.get_num_threads(), "n_params": res["n_params"]}


def in_child(*args: str) -> dict:
    """Run one measurement (``--child loader|train …``) in a fresh interpreter and return its JSON:
    its figure must not depend on what this process built before (its heap, its caches)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_shards", "--child", *args], cwd=root,
                         stdout=subprocess.PIPE, check=True).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


def _child(args: list[str]) -> None:
    kind, rest = args[0], args[1:]
    if kind == "loader":   # MANIFEST MAX_BATCHES|- PROFILE|-
        res = loader_rate(rest[0], max_batches=None if rest[1] == "-" else int(rest[1]),
                          profile=None if rest[2] == "-" else rest[2])
    else:                  # train MANIFEST OUT_DIR STEPS
        res = train_rate(rest[0], rest[1], int(rest[2]))
    print(json.dumps(res))


def profile_top(path: str, n: int = 15) -> str:
    buf = io.StringIO()
    pstats.Stats(path, stream=buf).sort_stats("tottime").print_stats(n)
    return buf.getvalue()


# --- one corpus --------------------------------------------------------------------------------

def bench_corpus(name: str, cfg, work: str, steps: int, max_batches: int | None, profile: bool) -> dict:
    t0 = time.perf_counter()
    built = build_all(cfg)
    log(f"{name}: built every stage in {time.perf_counter() - t0:.1f}s "
        f"({built['shards']['rows_out']:,} examples; splits {built['shards']['splits']})")
    shards_dir = cfg.table_url("shards")
    train_manifest = cfg.table_url("shards", "train", "manifest.json")
    res = {"layouts": {}}
    for layout in ("flat", "reference"):                 # the default layout last: it stays in place
        lcfg = cfg.with_settings([f"shards.layout={layout}"])
        w = write_shards(lcfg)
        s = w["summary"]
        stored = s["store"]["tokens"] if layout == "reference" else sum(v["tokens"] for v in s["splits"].values())
        prof = os.path.join(work, f"loader-{name}-{layout}.prof") if profile else None
        lr = in_child("loader", train_manifest, "-" if max_batches is None else str(max_batches), prof or "-")
        r = {"write_s": w["seconds"], "write_runs_s": w["runs_s"], "stored_tokens": stored,
             "message_tokens": s["message_tokens"], "stored_per_message_token": stored / max(s["message_tokens"], 1),
             "shard_tokens": s["shard_tokens"], "bytes_on_disk": dir_bytes(shards_dir),
             "summary_bytes_on_disk": s["bytes_on_disk"], "examples": s["rows_out"], "loader": lr}
        if prof:
            r["loader_profile"] = profile_top(prof)
        if layout == "reference":                        # the default layout: what training reads
            res["train"] = in_child("train", train_manifest, os.path.join(work, "run"), str(steps))
        res["layouts"][layout] = r
        log(f"{name} {layout}: shards stage {w['seconds']:.2f}s (best of {len(w['runs_s'])}); loader "
            f"{lr['tokens_per_s']:,.0f} tokens/s over {lr['batches']} batches (setup {lr['setup_s']:.2f}s)")
    return res


def checks(res: dict) -> list[dict]:
    """Every figure of one corpus with its target: [{figure, flat, reference, ratio, target, passed}]."""
    f, r, tr = res["layouts"]["flat"], res["layouts"]["reference"], res["train"]["tokens_per_s"]
    rows = [
        {"figure": "stored tokens / message tokens", "flat": f["stored_per_message_token"],
         "reference": r["stored_per_message_token"], "unit": "x", "target": f"<= {STORED_TARGET}x (reference)",
         "passed": r["stored_per_message_token"] <= STORED_TARGET},
        {"figure": "bytes on disk (OUT/shards)", "flat": f["bytes_on_disk"], "reference": r["bytes_on_disk"],
         "unit": "MB", "target": "-", "passed": None},
        {"figure": "shard writing time (best of 2)", "flat": f["write_s"], "reference": r["write_s"], "unit": "s",
         "target": "-", "passed": None},
        {"figure": "loader tokens/s per worker", "flat": f["loader"]["tokens_per_s"],
         "reference": r["loader"]["tokens_per_s"], "unit": "tok/s", "target": f">= {LOADER_MIN:,}",
         "passed": min(f["loader"]["tokens_per_s"], r["loader"]["tokens_per_s"]) >= LOADER_MIN},
        {"figure": f"loader / tiny training ({tr:,.0f} tok/s)", "flat": f["loader"]["tokens_per_s"] / tr,
         "reference": r["loader"]["tokens_per_s"] / tr, "unit": "x", "target": f">= {LOADER_VS_TRAIN:.0f}x",
         "passed": min(f["loader"]["tokens_per_s"], r["loader"]["tokens_per_s"]) / tr >= LOADER_VS_TRAIN},
    ]
    for row in rows:
        row["ratio"] = row["reference"] / row["flat"] if row["flat"] else None
    return rows


def _fmt(v, unit: str) -> str:
    if unit == "MB":
        return f"{v / 1e6:,.2f} MB"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "tok/s":
        return f"{v:,.0f}"
    return f"{v:.2f}x"


def print_table(name: str, rows: list[dict]) -> None:
    log(f"\n{name}\n| figure | flat | reference | reference/flat | target | result |\n|---|---|---|---|---|---|")
    for row in rows:
        result = "-" if row["passed"] is None else ("PASS" if row["passed"] else "FAIL")
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        log(f"| {row['figure']} | {_fmt(row['flat'], row['unit'])} | {_fmt(row['reference'], row['unit'])} | "
            f"{ratio} | {row['target']} | {result} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_shards")
    p.add_argument("--scale", type=int, default=50, help="`socialcorpus sample --scale` of the demo corpus (default 50)")
    p.add_argument("--skip-real", action="store_true", help="leave out the real samples")
    p.add_argument("--steps", type=int, default=8, help="training steps of the tiny preset (default 8)")
    p.add_argument("--max-batches", type=int, default=None, help="loader batches per pass (default: the whole split)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile one more loader pass per layout (not counted); print the top functions")
    p.add_argument("--json", default=str(OUT_JSON), help=f"where the figures go (default {OUT_JSON})")
    p.add_argument("--work", default=None, help="keep the built corpora here (default: a temporary folder)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_shards_", dir="/tmp") as tmp:
        work = a.work or tmp
        # before trainer.data is imported: it reads the cache folder once
        os.environ["SOCIALCORPUS_SHARD_CACHE"] = os.path.join(work, "shard_cache")
        corpora = {}
        if not a.skip_real:
            corpora["real"] = real_config(os.path.join(work, "real"))
        corpora["demo"] = demo_config(os.path.join(work, "demo"), a.scale)
        results, failed = {}, []
        for name, cfg in corpora.items():
            label = name if name == "real" else f"demo --scale {a.scale}"
            res = bench_corpus(name, cfg, os.path.join(work, name), a.steps, a.max_batches, a.profile)
            res["checks"] = checks(res)
            results[name] = res
            print_table(label, res["checks"])
            failed += [f"{name}: {c['figure']}" for c in res["checks"] if c["passed"] is False]
            if a.profile:
                for layout, r in res["layouts"].items():
                    log(f"\nloader profile, {name}, {layout} layout (tottime):\n{r['loader_profile']}")
    doc = {"targets": {"stored_per_message_token": STORED_TARGET, "loader_vs_train": LOADER_VS_TRAIN,
                       "loader_tokens_per_s": LOADER_MIN}, "scale": a.scale, "corpora": results}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    log(f"\nwrote {a.json}")
    if failed:
        log(f"below target: {'; '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
