"""sha256 of every output file of a build of the demo corpus and of the real samples.

Refactors keep outputs identical: run this before and after a change and compare.

    python -m benchmarks.output_hashes --engine polars --json before.json
    ...change...
    python -m benchmarks.output_hashes --engine polars --compare before.json

Builds (in a fixed folder, default /tmp/socialcorpus-output-hashes, emptied first: paths reach
`source_uri` and the config hash, so they must not change between runs; with a fixed secret) the demo corpus (`socialcorpus sample`, seed 0,
scale 1) and every real sample in ../shared/data/real with the default config. Files whose
bytes carry times by design (the JSON build summary, the lock's holder record) are left out,
the build-complete record is hashed without its time and engine; everything else under `OUT/` is hashed: tables, quarantine, tokenizer, shards,
manifests and the build-complete record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys

SECRET = "output-hashes-fixed-secret"
SKIP = {"build_summary.json", ".socialcorpus-lock", ".socialcorpus-lock.holder.json"}


def _table_hash(paths: list[str]) -> str:
    """sha256 of the rows and schema (Arrow IPC) of the Parquet files ``paths`` read in that order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.concat_tables([pq.read_table(p) for p in paths]) if len(paths) > 1 else pq.read_table(paths[0])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def hash_tree(root: str) -> dict[str, dict[str, str]]:
    """{"bytes": {file: sha256}, "content": {table folder or file: sha256}} for every output under ``root``.

    `content` hashes each table folder's rows (its part files read in name order) rather than
    file bytes, so builds whose part files are cut differently (Spark samples its range
    boundaries) still compare; shards and the other files are hashed by their bytes in both.
    """
    raw, content, tables = {}, {}, {}
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f in SKIP or f.startswith(".") or f.endswith(".crc") or f == "_SUCCESS":
                continue
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            with open(p, "rb") as fh:
                data = fh.read()
            if f == "_BUILD_COMPLETE.json":  # when and by which engine: the rest must match
                record = json.loads(data)
                record.pop("completed_at", None)
                record.pop("engine", None)
                data = json.dumps(record, sort_keys=True).encode()
            raw[rel] = hashlib.sha256(data).hexdigest()
            if f.endswith(".parquet") and rel.split(os.sep)[0] != "shards":
                tables.setdefault(os.path.dirname(rel), []).append(p)
            else:
                content[rel] = raw[rel]
    for folder, paths in tables.items():
        content[folder] = _table_hash(paths)
    return {"bytes": raw, "content": content}


def build_all(engine: str, tmp: str, which: tuple[str, ...] = ("demo", "real"),
              settings: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    from benchmarks._inputs import real_sources
    from pipelines.core import config as cfgmod
    from pipelines.build import build
    from pipelines.core.context import RunContext
    from pipelines.sample import write_sample

    result = {}
    if "demo" in which:
        dumps = os.path.join(tmp, "demo", "dumps")
        write_sample(dumps, seed=0, scale=1)
        cfg = cfgmod.load(os.path.join(dumps, "corpus.toml")).with_overrides(engine=engine).with_settings(settings)
        build(RunContext(cfg, secret_value=SECRET))
        result["demo"] = hash_tree(cfg.out)
    if "real" in which:
        out = os.path.join(tmp, "real", "out")
        cfg = cfgmod.from_dict({"out": out, "engine": engine, "sources": real_sources()}, base_dir=out).with_settings(settings)
        build(RunContext(cfg, secret_value=SECRET))
        result["real"] = hash_tree(cfg.out)
    return result


def compare(before: dict, after: dict, kind: str | None = None) -> list[str]:
    """What differs: file bytes when both builds ran on Polars (deterministic files), table contents
    otherwise (Spark names its part files at random), or ``kind`` when given."""
    diffs = []
    kind = kind or ("bytes" if before.get("engine") == after.get("engine") == "polars" else "content")
    for corpus in sorted(set(before) - {"engine"} | set(after) - {"engine"}):
        b, a = before.get(corpus, {}).get(kind, {}), after.get(corpus, {}).get(kind, {})
        for f in sorted(set(b) | set(a)):
            if b.get(f) != a.get(f):
                diffs.append(f"{corpus}/{f}: {b.get(f, 'missing')[:12]} -> {a.get(f, 'missing')[:12]}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.output_hashes", description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="polars", choices=["polars", "spark"])
    p.add_argument("--only", choices=["demo", "real"], help="build one corpus only")
    p.add_argument("--dir", default="/tmp/socialcorpus-output-hashes", help="work folder (emptied first)")
    p.add_argument("--json", help="write the hashes to this file")
    p.add_argument("--compare", help="compare with hashes written before; exit 1 on any difference")
    p.add_argument("--by", choices=["bytes", "content"],
                   help="compare file bytes or table contents (default: bytes between two Polars builds)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a setting for both builds, as `socialcorpus build --set` (repeatable)")
    args = p.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    hashes = {"engine": args.engine, **build_all(args.engine, args.dir, (args.only,) if args.only else ("demo", "real"), tuple(args.set))}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(hashes, f, indent=1, sort_keys=True)
    n = sum(len(v["bytes"]) for k, v in hashes.items() if k != "engine")
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        if args.only:
            before = {"engine": before.get("engine"), args.only: before.get(args.only, {})}
        diffs = compare(before, hashes, args.by)
        print(f"{n} files hashed; {len(diffs)} differ from {args.compare} (compared by {args.by or ('bytes' if before.get('engine') == args.engine == 'polars' else 'content')})")
        for d in diffs[:50]:
            print("  " + d)
        return 1 if diffs else 0
    print(f"{n} files hashed ({args.engine})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
