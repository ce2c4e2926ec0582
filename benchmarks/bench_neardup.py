"""Near-dup quality, speed and memory vs datasketch MinHashLSH and datatrove's MinHash dedup.

    python -m benchmarks.bench_neardup                      # 200k messages, peers on a 50k subset
    python -m benchmarks.bench_neardup --messages 50000 --peer-messages 50000

Input: the real sample messages (Reddit, IRC, Discord after record dedup), replayed to
``--messages`` with new ids and Markov text (an order-1 word chain over the real messages;
each replay keeps its template's metadata and word count), so the replays are new texts, not
copies of their templates; plus, for 400 of the longer real messages, three planted
near-duplicates each (one word changed, one word inserted, sentences reordered).

Pair definition (printed): two messages are near-duplicates when the exact Jaccard similarity
of their shingle sets (lower-cased ``\\w+`` words, ``shingle_size`` at a time: the stage's
config) is at least ``threshold``, or when one is a planted variant of the other. Recall: the
share of planted (variant, original) pairs put in the same cluster. Precision: the share of
reported pairs touching a planted message that are near-duplicates by that definition.

Each tool runs in its own child process (wall and CPU time and peak RSS measured there, after
its input is loaded; the stage after a 2,000-message warm-up, so first-use imports are not
counted). The stage's ratio run (the peers' messages) runs before and after the peers and the
slower of the two is used: the machine's load moves. The peers run with the interpreter of a venv of their own under
``benchmarks/out/peers`` (created and filled with the pinned ``PEER_PINS`` on first use),
never with the project's dependencies. The stage's index memory is its VmHWM during the
banding phase (``neardup.band_edges``) above its RSS when the phase starts, with the peak reset
by ``/proc/self/clear_refs``; one band's table size (8 + 4 x rows bytes per candidate) is
printed beside it.

This module is also the peer children's script: module-level imports are the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "neardup"
PEERS = HERE / "out" / "peers"
# datatrove's MinHash modules import regex, xxhash and tokenizers (its "processing" extra, which
# also pulls fasttext, nltk, trafilatura...: only these three are needed); spacy is its English
# word tokenizer (a blank pipeline: no model download), used by the "datatrove-defaults" peer.
PEER_PINS = ["datasketch==2.0.0", "datatrove==0.10.1", "regex==2026.11.19", "xxhash==3.8.2", "tokenizers==0.23.3",
             "spacy==3.8.18"]
N_ORIGINALS = 400
WORD = re.compile(r"\w+")


# --- memory helpers (Linux /proc) ---------------------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss_bytes() -> int:
    return _status_kb("VmRSS") * 1024


def _peak_bytes() -> int:
    # VmHWM, not getrusage's ru_maxrss: a child's ru_maxrss starts at its parent's RSS at fork
    return _status_kb("VmHWM") * 1024


# --- input --------------------------------------------------------------------------------

def _variants(text: str, rng) -> list[str]:
    w = text.split()
    i = rng.randrange(len(w))
    sents = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    reorder = " ".join(sents[1:] + sents[:1]) if len(sents) > 1 else " ".join(w[len(w) // 2:] + w[:len(w) // 2])
    return [" ".join(w[:i] + [w[i] + "x"] + w[i + 1:]), " ".join(w[:i] + ["really"] + w[i:]), reorder]


def markov_texts(texts: list[str], lengths, seed: int = 0) -> list[str]:
    """One text per entry of ``lengths`` (words), from an order-1 chain over the words of ``texts``."""
    import numpy as np
    import polars as pl

    words = pl.Series(texts).fill_null("").str.split(" ").explode().drop_nulls()
    words = words.filter(words != "")
    vocab = words.unique().sort()
    codes = (words.rank("dense") - 1).to_numpy().astype(np.int64)  # index into the sorted vocabulary
    order = np.argsort(codes[:-1], kind="stable")
    succ = codes[1:][order]
    counts = np.bincount(codes[:-1], minlength=len(vocab))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    by_len = np.argsort(-lengths, kind="stable")
    offs = np.r_[0, np.cumsum(lengths)]
    flat = np.empty(int(offs[-1]), dtype=np.int64)
    cur = codes[rng.integers(0, len(codes), len(lengths))][by_len]
    sorted_len = lengths[by_len]
    for step in range(int(lengths.max(initial=0))):
        active = int(np.searchsorted(-sorted_len, -step, side="left"))  # docs longer than step (a prefix)
        if active == 0:
            break
        c = cur[:active]
        flat[offs[by_len[:active]] + step] = c
        cnt = counts[c]
        pick = starts[c] + (rng.random(active) * np.maximum(cnt, 1)).astype(np.int64)
        nxt = np.where(cnt > 0, succ[np.minimum(pick, len(succ) - 1)], codes[rng.integers(0, len(codes), active)])
        cur[:active] = nxt
    doc = np.repeat(np.arange(len(lengths)), lengths)
    out = (pl.DataFrame({"doc": doc, "w": vocab.gather(flat)}).group_by("doc").agg(pl.col("w").str.join(" "))
           .sort("doc"))
    full = pl.DataFrame({"doc": np.arange(len(lengths))}).join(out, on="doc", how="left")
    return full["w"].fill_null("").to_list()


def bench_frame(messages: int, subset: int | None = None):
    """(the ``messages`` input, the first ``subset`` of it with every planted row, ground-truth groups)."""
    import random

    import numpy as np
    import polars as pl

    from benchmarks._inputs import real_messages
    from schemas import MESSAGES as M

    rng = random.Random(0)
    base = real_messages()
    pool = (base.filter(pl.col(M.text).str.count_matches(r"\w+") >= 20).unique(M.text).sort(M.message_id)
            .head(N_ORIGINALS))
    rows, group = [], {}
    for mid, text in zip(pool[M.message_id], pool[M.text]):
        group[mid] = mid
        for j, v in enumerate(_variants(text, rng)):
            group[f"{mid}~{j}"] = mid
            rows.append({M.message_id: f"{mid}~{j}", M.text: v, "src": mid})
    var = pl.DataFrame(rows).join(pool.drop(M.text), left_on="src", right_on=M.message_id).drop("src").select(base.columns)
    n_rep = max(messages - base.height - var.height, 0)
    idx = (np.arange(n_rep, dtype=np.int64) * 7919) % base.height
    tmpl = base[idx]
    lengths = tmpl[M.text].fill_null("").str.split(" ").list.len().to_numpy()
    lengths = np.where(tmpl[M.text].fill_null("").str.len_chars().to_numpy() == 0, 0, lengths)
    texts = markov_texts(base[M.text].to_list(), lengths)
    rep = tmpl.with_columns(pl.Series(M.message_id, [f"zr{i:08d}" for i in range(n_rep)], dtype=pl.String),
                            pl.Series(M.text, texts, dtype=pl.String).cast(tmpl.schema[M.text]))
    full = pl.concat([base, rep, var])
    small = None
    if subset is not None:
        small = pl.concat([base, rep.head(max(subset - base.height - var.height, 0)), var])
    return full, small, group


def doc_texts(df):
    import polars as pl

    from schemas import MESSAGES as M
    return df.select(M.message_id, pl.concat_str([pl.col(M.title).fill_null(""), pl.col(M.text).fill_null("")],
                                                  separator="\n").alias("doc"))


# --- scoring ------------------------------------------------------------------------------

def _shingles(text: str, k: int) -> frozenset:
    words = WORD.findall(text.lower())
    if len(words) < k:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))


def score(pairs, group, texts: dict, k: int, threshold: float) -> dict:
    """Precision over reported pairs touching a planted message; recall over planted pairs (module doc)."""
    cache = {}

    def jac(a, b):
        sa = cache.setdefault(a, _shingles(texts[a], k))
        sb = cache.setdefault(b, _shingles(texts[b], k))
        return len(sa & sb) / max(len(sa | sb), 1)

    touching = [(a, b) for a, b in pairs if a in group or b in group]
    good = sum((group.get(a) is not None and group.get(a) == group.get(b)) or jac(a, b) >= threshold
               for a, b in touching)
    parent = {}

    def root(x):
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x
    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    planted = [(v, o) for v, o in group.items() if v != o]
    meets = [(v, o) for v, o in planted if jac(v, o) >= threshold]
    return {"precision": good / max(len(touching), 1), "recall": sum(root(v) == root(o) for v, o in planted) / len(planted),
            "touching": len(touching), "planted": len(planted), "planted_meeting_definition": len(meets),
            "pairs": len(pairs)}


# --- children -----------------------------------------------------------------------------

def child_stage(inp: str, out: str) -> None:
    import polars as pl

    from pipelines.stages import neardup
    from schemas import DEDUP
    from schemas import MESSAGES as M

    df = pl.read_parquet(inp)
    cfg = neardup.NearDupConfig()
    neardup.near_dedup(df.head(2_000), cfg)  # warm-up: first-use imports are not the stage's per-message cost
    rss_input = _rss_bytes()
    phase = {}
    if hasattr(neardup, "band_edges"):
        inner = neardup.band_edges

        def timed(*a, **kw):
            phase["hwm_before"] = _peak_bytes()
            _reset_peak()
            phase["rss_start"] = _rss_bytes()
            t = time.perf_counter()
            res = inner(*a, **kw)
            phase["seconds"] = time.perf_counter() - t
            phase["hwm"] = _peak_bytes()
            return res
        neardup.band_edges = timed
    t, c = time.perf_counter(), time.process_time()
    res, stats = neardup.near_dedup(df, cfg)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    peak = max(_peak_bytes(), phase.get("hwm_before", 0), phase.get("hwm", 0))
    pairs = res.filter(pl.col(DEDUP.dup_of).is_not_null()).select(M.message_id, DEDUP.dup_of).rows()
    rec = {"seconds": seconds, "cpu": cpu, "rows": df.height, "peak_rss": peak, "rss_input": rss_input, "stats": stats,
           "pairs": pairs}
    if phase:
        rec["index_bytes"] = phase["hwm"] - phase["rss_start"]
        rec["band_seconds"] = phase["seconds"]
    Path(out).write_text(json.dumps(rec))


def _read_docs(inp: str):
    with open(inp) as f:
        return [tuple(json.loads(line)) for line in f]


def child_datasketch(inp: str, out: str, k: int, num_perm: int, seed: int, threshold: float) -> None:
    from datasketch import MinHash, MinHashLSH

    docs = _read_docs(inp)
    rss_input = _rss_bytes()
    t, c = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    pairs, sigs = [], {}
    for mid, text in docs:
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([s.encode("utf-8") for s in _shingles(text, k)])
        pairs.extend((mid, o) for o in lsh.query(m) if m.jaccard(sigs[o]) >= threshold)
        lsh.insert(mid, m)
        sigs[mid] = m
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    Path(out).write_text(json.dumps({"seconds": seconds, "cpu": cpu, "rows": len(docs), "peak_rss": _peak_bytes(),
                                     "rss_input": rss_input, "pairs": pairs}))


def child_datatrove(inp: str, out: str, k: int, bands: int, rows: int, seed: int, work: str,
                    defaults: bool = False) -> None:
    """datatrove's four-step MinHash dedup (signatures, buckets, clusters) in one process. With
    ``defaults``, datatrove's own configuration (5-grams, 14 x 8 buckets, its text
    normalisation and spaCy word tokenizer) instead of the stage's shingles and banding."""
    import shutil
    import struct

    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupSignature)
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.word_tokenizers import WordTokenizer
    from loguru import logger

    logger.remove()

    class Words(WordTokenizer):  # the stage's words: lower-cased \w+
        def word_tokenize(self, text):
            return WORD.findall(text.lower())

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    docs = _read_docs(inp)
    shutil.rmtree(work, ignore_errors=True)
    rss_input = _rss_bytes()
    norm = TextNormConfig(lowercase=True, norm_whitespace=False, remove_punctuation=False,
                          norm_unicode_diacritics=False, norm_numbers=False)
    cfg = MinhashConfig() if defaults else MinhashConfig(n_grams=k, num_buckets=bands, hashes_per_bucket=rows,
                                                         seed=seed, norm_config=norm)
    bands = cfg.num_buckets
    language = "en" if defaults else Words()
    t, c = time.perf_counter(), time.process_time()
    MinhashDedupSignature(output_folder=f"{work}/sigs", config=cfg, language=language).run(
        (Document(text=text, id=str(i)) for i, (_, text) in enumerate(docs)), rank=0, world_size=1)
    for b in range(bands):
        MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=cfg).run(
            rank=b, world_size=bands)
    MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove", config=cfg,
                        save_cluster_id=True).run()
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    first, pairs = {}, []
    path = Path(work) / "remove" / "000000.clusters"
    data = path.read_bytes() if path.exists() else b""
    for doc, cluster in struct.iter_unpack("<II", data):
        mid = docs[doc][0]
        if cluster in first:
            pairs.append((mid, first[cluster]))
        else:
            first[cluster] = mid
    Path(out).write_text(json.dumps({"seconds": seconds, "cpu": cpu, "rows": len(docs), "peak_rss": _peak_bytes(),
                                     "rss_input": rss_input, "pairs": pairs}))
    shutil.rmtree(work, ignore_errors=True)


# --- parent -------------------------------------------------------------------------------

def peer_python() -> str | None:
    """The peers' interpreter: a venv under benchmarks/out/peers with PEER_PINS (made on first use)."""
    py = PEERS / "venv" / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS / "venv")], check=True)
    ok = subprocess.run([str(py), "-c", "import datasketch, datatrove.pipeline.dedup.minhash, regex, xxhash, spacy"],
                        capture_output=True).returncode == 0
    if not ok:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PINS], capture_output=True, text=True)
        if r.returncode:
            print(f"peers: pip install {' '.join(PEER_PINS)} failed:\n{r.stderr[-2000:]}")
    return str(py)


def _run_child(argv: list[str], python: str, module: bool) -> dict | None:
    out = OUT / f"result-{argv[0]}.json"
    out.unlink(missing_ok=True)
    cmd = [python, "-m", "benchmarks.bench_neardup"] if module else [python, str(Path(__file__))]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    r = subprocess.run([*cmd, "--child", *argv, "--out", str(out)], cwd=HERE.parent, env=env,
                       capture_output=True, text=True)
    if r.returncode:
        print(f"  {argv[0]} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
        return None
    return json.loads(out.read_text())


def _line(name: str, rec: dict, sc: dict, n_msgs: int) -> str:
    rate = rec["rows"] / rec["seconds"]
    mem = (rec["peak_rss"] - rec["rss_input"]) / max(n_msgs, 1)
    return (f"{name:<24}: {rate:8.0f} msgs/s ({rec['seconds']:6.1f} s wall, {rec['cpu']:6.1f} s CPU)  precision {sc['precision']:.3f}  "
            f"recall {sc['recall']:.3f}  peak RSS {rec['peak_rss'] / 2**20:6.0f} MB "
            f"({mem:,.0f} B/msg above its input)  pairs {sc['pairs']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_neardup", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200_000, help="messages for the stage (default 200k)")
    p.add_argument("--peer-messages", type=int, default=50_000,
                   help="messages for the peers and the stage's ratio run (a subset of the input; default 50k)")
    p.add_argument("--no-peers", action="store_true", help="the stage only")
    p.add_argument("--peers", default="datasketch,datatrove,datatrove-defaults",
                   help="comma-separated peers to run (default: all three)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, inp, *rest = args.child
        if kind == "stage":
            child_stage(inp, args.out)
        elif kind == "datasketch":
            child_datasketch(inp, args.out, int(rest[0]), int(rest[1]), int(rest[2]), float(rest[3]))
        elif kind == "datatrove":
            child_datatrove(inp, args.out, int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]), rest[4],
                            rest[5] == "defaults")
        return 0

    import polars as pl

    from pipelines.core.settings import NearDupConfig

    cfg = NearDupConfig()
    OUT.mkdir(parents=True, exist_ok=True)
    sub_n = min(args.peer_messages, args.messages)
    t = time.perf_counter()
    full, small, group = bench_frame(args.messages, sub_n if sub_n < args.messages else None)
    small = full if small is None else small
    full.write_parquet(OUT / "input-full.parquet")
    small.write_parquet(OUT / "input-subset.parquet")
    texts = dict(doc_texts(full).iter_rows())
    n_plants = len(group) - N_ORIGINALS
    print(f"input: {full.height} messages ({full.height - n_plants} real + Markov replays, {n_plants} planted "
          f"near-dups of {N_ORIGINALS} real messages), made in {time.perf_counter() - t:.0f} s; "
          f"peers and the ratio run on the first {small.height}")
    print(f"pair definition: exact Jaccard of {cfg.shingle_size}-word shingle sets (lower-cased \\w+ words) "
          f">= {cfg.threshold}, or planted variant/original; candidates need >= {cfg.min_tokens} words; "
          f"num_perm {cfg.num_perm}, bands {cfg.bands} x rows {cfg.rows}")

    def report(name, rec, n):
        sc = score([tuple(x) for x in rec["pairs"]], group, texts, cfg.shingle_size, cfg.threshold)
        print(_line(name, rec, sc, n), flush=True)
        return sc

    results = {}
    for label, path, n in (("stage", OUT / "input-full.parquet", full.height),
                           ("stage (subset)", OUT / "input-subset.parquet", small.height)):
        if label == "stage (subset)" and small.height == full.height:
            results[label] = results["stage"]
            continue
        rec = _run_child(["stage", str(path)], sys.executable, module=True)
        if rec is None:
            return 1
        results[label] = rec
        sc = report(label, rec, n)
        if "index_bytes" in rec:
            cand = rec["stats"]["candidates"]
            print(f"  index (banding phase {rec['band_seconds']:.1f} s): {rec['index_bytes'] / 2**20:.1f} MB above the "
                  f"RSS at its start = {rec['index_bytes'] / n:.0f} B/msg ({rec['index_bytes'] / max(cand, 1):.0f} "
                  f"B/candidate); one band's (row, values) table: {(8 + 4 * cfg.rows) * cand / n:.0f} B/msg; "
                  f"signatures {cfg.num_perm * 4} B/candidate")
        print(f"  stage counts: {rec['stats']['candidates']} candidates, {rec['stats']['candidate_edges']} candidate "
              f"edges, {rec['stats']['verified_edges']} verified, {rec['stats']['clusters']} clusters; planted pairs "
              f"meeting the definition: {sc['planted_meeting_definition']}/{sc['planted']}")
    if args.no_peers:
        return 0
    eligible = doc_texts(small).filter(pl.col("doc").str.count_matches(r"\w+") >= cfg.min_tokens)
    with open(OUT / "peer-docs.jsonl", "w") as f:
        for mid, doc in eligible.iter_rows():
            f.write(json.dumps([mid, doc]) + "\n")
    py = peer_python()
    peers = [x for x in args.peers.split(",") if x]
    peer_recs = []
    print(f"peers: {small.height} messages, {eligible.height} of them with >= {cfg.min_tokens} words (the peers get "
          f"only those, already filtered; interpreter {py}). datasketch and datatrove: the stage's shingles "
          f"({cfg.shingle_size}-word, lower-cased \\w+), num_perm {cfg.num_perm} / {cfg.bands} x {cfg.rows} bands; "
          f"datasketch verifies candidates (Jaccard estimate >= {cfg.threshold}), datatrove does not. "
          f"datatrove (defaults): its own MinhashConfig() (5-grams, 14 x 8 buckets, its normalisation, spaCy words)")
    stage_runs = [results["stage (subset)"]]
    for peer in peers:
        if peer == "datasketch":
            argv = ["datasketch", str(OUT / "peer-docs.jsonl"), str(cfg.shingle_size), str(cfg.num_perm),
                    str(cfg.seed), str(cfg.threshold)]
            name = "datasketch MinHashLSH"
        elif peer in ("datatrove", "datatrove-defaults"):
            mode = "defaults" if peer.endswith("defaults") else "matched"
            argv = ["datatrove", str(OUT / "peer-docs.jsonl"), str(cfg.shingle_size), str(cfg.bands), str(cfg.rows),
                    str(cfg.seed), str(OUT / "datatrove-work"), mode]
            name = "datatrove (defaults)" if mode == "defaults" else "datatrove MinHash dedup"
        else:
            print(f"unknown peer {peer!r}")
            continue
        rec = _run_child(argv, py, module=False)
        if rec is None:
            continue
        rec["rows"] = small.height  # rate over the same messages as the stage's subset run
        report(name, rec, small.height)
        peer_recs.append((peer, rec))
    # The stage's ratio run again after the peers: the machine's load moves; the slower of the two counts.
    again = _run_child(["stage", str(OUT / "input-subset.parquet")], sys.executable, module=True)
    if again is not None:
        stage_runs.append(again)
        print(f"stage (subset, again)   : {small.height / again['seconds']:8.0f} msgs/s ({again['seconds']:6.1f} s wall, "
              f"{again['cpu']:6.1f} s CPU)")
    wall = max(r["seconds"] for r in stage_runs)
    cpu = max(r["cpu"] for r in stage_runs)
    for peer, rec in peer_recs:
        print(f"speed ratio (stage / {peer}, same {small.height} messages): {rec['seconds'] / wall:.1f}x wall, "
              f"{rec['cpu'] / cpu:.1f}x CPU time (the stage's slower run; it uses two threads, the peers one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
