"""Vectorised MinHash over word shingles, bit-for-bit equal to datasketch's ``MinHash`` (2.x,
default ``affine32`` scheme, ``sha1_hash32``, same seed and ``num_perm``).

datasketch hashes each shingle (UTF-8 bytes) with the first 4 bytes of SHA-1, pre-mixes it
with the MurmurHash3 32-bit finalizer and applies ``a*h + b mod 2**32`` per permutation; the
signature is the minimum per permutation. Here shingles come from a Polars expression, SHA-1
runs once per *distinct* shingle, and the permutation + minimum run as numpy array
operations over all shingles of a batch at once (``np.minimum.reduceat`` per document).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import polars as pl

WORD_RE = r"\w+"
EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's initial (and empty-set) value
_CHUNK_ROWS = 1 << 18  # shingle rows per permutation block: 256k x 128 x 4 B = 128 MB at most

_FM1, _FM2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b), as uint32 arrays."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * _FM1
    h = h ^ (h >> np.uint32(13))
    h = h * _FM2
    return h ^ (h >> np.uint32(16))


def shingles_reference(text: str, k: int) -> set[str]:
    """The shingle set of one text, in plain Python (the slow reference for tests): lower-cased
    ``\\w+`` words joined by a space, k at a time; fewer than k words give one shingle of all."""
    words = re.findall(WORD_RE, text.lower())
    if not words:
        return set()
    if len(words) < k:
        return {" ".join(words)}
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def shingle_frame(texts: pl.Series, k: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Distinct (doc, shingle) rows for a Series of texts, and the word count of each text."""
    words = pl.DataFrame({"doc": np.arange(len(texts), dtype=np.int64),
                          "w": texts.fill_null("").str.to_lowercase().str.extract_all(WORD_RE)})
    n_words = words["w"].list.len().fill_null(0).to_numpy()
    long = words.filter(pl.col("w").list.len() >= k).explode("w")
    # Rows of one document are contiguous after explode, so plain shifts build the k-grams;
    # a gram is inside one document iff the row k-1 ahead belongs to the same document.
    grams = (long.select("doc", pl.concat_str([pl.col("w").shift(-i) for i in range(k)], separator=" ").alias("s"),
                         (pl.col("doc").shift(-(k - 1)) == pl.col("doc")).alias("ok"))
             .filter(pl.col("ok")).drop("ok"))
    short = (words.filter((pl.col("w").list.len() < k) & (pl.col("w").list.len() > 0))
             .select("doc", pl.col("w").list.join(" ").alias("s")))
    return pl.concat([grams, short]).unique(maintain_order=False).sort("doc", "s"), n_words


def signatures(texts: pl.Series, num_perm: int = 128, seed: int = 1, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (n x num_perm, uint32) of each text's k-word shingle set, and word counts.

    Equal to ``datasketch.MinHash(num_perm, seed)`` updated with each shingle's UTF-8 bytes. A
    text without words gets the empty signature (all 0xFFFFFFFF), as datasketch does.
    """
    sh, n_words = shingle_frame(texts, k)
    n = len(texts)
    sig = np.full((n, num_perm), EMPTY, dtype=np.uint32)
    if sh.height == 0:
        return sig, n_words
    uniq = sh.select(pl.col("s").unique().sort())
    # SHA-1 needs Python: once per distinct shingle of the batch, not per occurrence.
    sha1 = hashlib.sha1
    h = np.frombuffer(b"".join([sha1(s.encode("utf-8")).digest()[:4] for s in uniq["s"].to_list()]),
                      dtype="<u4").astype(np.uint32)
    hv_table = uniq.with_columns(pl.Series("h", fmix32(h)))
    rows = sh.join(hv_table, on="s", how="left").sort("doc", "s")
    docs = rows["doc"].to_numpy()
    hv = rows["h"].to_numpy()
    a, b = permutations(num_perm, seed)
    start = 0
    while start < len(docs):
        end = min(start + _CHUNK_ROWS, len(docs))
        if end < len(docs):  # cut at a document boundary so reduceat sees whole documents
            cut = np.searchsorted(docs, docs[end], side="left")
            end = cut if cut > start else np.searchsorted(docs, docs[end], side="right")
        d = docs[start:end]
        # (num_perm, rows) so the per-document minimum reduces along contiguous memory;
        # uint32 arithmetic wraps mod 2**32 exactly like datasketch's.
        phv = a[:, None] * hv[None, start:end] + b[:, None]
        bounds = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        sig[d[bounds]] = np.minimum.reduceat(phv, bounds, axis=1).T
        start = end
    return sig, n_words


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band): a mixed fold of the band's ``rows`` values.

    Equal band values give equal keys; different ones collide with probability ~2**-64 (and
    candidate pairs are verified on the signatures anyway).
    """
    s = sig[:, : bands * rows].reshape(sig.shape[0], bands, rows).astype(np.uint64)
    key = np.full(s.shape[:2], np.uint64(0xCBF29CE484222325), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows):
            key = (key ^ s[:, :, j]) * np.uint64(0x100000001B3)
            key ^= key >> np.uint64(29)
    return key
