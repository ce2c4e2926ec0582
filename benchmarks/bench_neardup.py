"""Near-dup quality and speed vs datasketch per-document MinHashLSH. `python -m benchmarks.bench_neardup`.

Input: real sample messages plus, for 400 of the longer ones, three planted near-duplicates each
(one word changed, one word inserted, sentences reordered). Ground truth: a planted copy
and its original are duplicates; any other reported pair touching them is a false positive.
"""

from __future__ import annotations

import random
import re
import time

import polars as pl
from datasketch import MinHash, MinHashLSH

from benchmarks._inputs import real_messages
from pipelines.core.minhash import shingles_reference
from pipelines.stages.neardup import NearDupConfig, near_dedup
from schemas import DEDUP
from schemas import MESSAGES as M

N_ORIGINALS = 400


def _variants(text: str, rng: random.Random) -> list[str]:
    w = text.split()
    i = rng.randrange(len(w))
    sents = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    reorder = " ".join(sents[1:] + sents[:1]) if len(sents) > 1 else " ".join(w[len(w) // 2:] + w[:len(w) // 2])
    return [" ".join(w[:i] + [w[i] + "x"] + w[i + 1:]), " ".join(w[:i] + ["really"] + w[i:]), reorder]


def planted_frame():
    rng = random.Random(0)
    base = real_messages()
    pool = base.filter(pl.col(M.text).str.count_matches(r"\w+") >= 20).unique(M.text).sort(M.message_id).head(N_ORIGINALS)
    rows, group = [], {}
    for mid, text in zip(pool[M.message_id], pool[M.text]):
        group[mid] = mid
        for j, v in enumerate(_variants(text, rng)):
            group[f"{mid}~{j}"] = mid
            rows.append({M.message_id: f"{mid}~{j}", M.text: v, "src": mid})
    var = pl.DataFrame(rows).join(pool.drop(M.text), left_on="src", right_on=M.message_id).drop("src").select(base.columns)
    return pl.concat([base, var]), group


def score(pairs, group) -> tuple[float, float]:
    touching = [(a, b) for a, b in pairs if a in group or b in group]
    precision = sum(group.get(a) == group.get(b) is not None for a, b in touching) / max(len(touching), 1)
    comp = {}
    for a, b in pairs:  # union-find over reported pairs, for recall
        ra, rb = comp.setdefault(a, a), comp.setdefault(b, b)
        while comp[ra] != ra:
            ra = comp[ra]
        while comp[rb] != rb:
            rb = comp[rb]
        comp[max(ra, rb)] = min(ra, rb)

    def root(x):
        while comp.get(x, x) != x:
            x = comp[x]
        return x
    planted = [(v, o) for v, o in group.items() if v != o]
    recall = sum(root(v) == root(o) for v, o in planted) / len(planted)
    return precision, recall


def main() -> None:
    df, group = planted_frame()
    cfg = NearDupConfig()
    t = time.perf_counter()
    out, stats = near_dedup(df, cfg)
    ours_s = time.perf_counter() - t
    ours = out.filter(pl.col(DEDUP.dup_of).is_not_null()).select(M.message_id, DEDUP.dup_of).rows()
    p, r = score(ours, group)
    print(f"messages: {df.height} ({stats['candidates']} candidates), planted near-dups: {len(group) - N_ORIGINALS}")
    print(f"near-dup stage      : {df.height / ours_s:8.0f} msgs/s ({ours_s:.1f} s)  precision {p:.3f}  recall {r:.3f}")
    # Baseline: datasketch per-document MinHash + MinHashLSH, same shingles, same short-message rule.
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    pairs, sigs = [], {}
    docs = (pl.concat_str([pl.col(M.title).fill_null(""), pl.col(M.text)], separator="\n"))
    for mid, text in zip(df[M.message_id], df.select(docs).to_series()):
        if len(re.findall(r"\w+", text.lower())) < cfg.min_tokens:
            continue
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch([s.encode("utf-8") for s in shingles_reference(text, cfg.shingle_size)])
        pairs.extend((mid, o) for o in lsh.query(m) if m.jaccard(sigs[o]) >= cfg.threshold)
        lsh.insert(mid, m)
        sigs[mid] = m
    base_s = time.perf_counter() - t
    p2, r2 = score(pairs, group)
    print(f"datasketch MinHashLSH: {df.height / base_s:8.0f} msgs/s ({base_s:.1f} s)  precision {p2:.3f}  recall {r2:.3f}")
    print(f"speed ratio (stage / datasketch): {base_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
