"""Vectorised MinHash over word shingles, bit-for-bit equal to datasketch's ``MinHash`` (2.x,
default ``affine32`` scheme, ``sha1_hash32``, same seed and ``num_perm``).

datasketch hashes each shingle (UTF-8 bytes) with the first 4 bytes of SHA-1, pre-mixes it
with the MurmurHash3 32-bit finalizer and applies ``a*h + b mod 2**32`` per permutation; the
signature is the minimum per permutation. Here shingles come from a Polars expression, SHA-1
runs once per *distinct* shingle of a batch (found on integer word codes, so only distinct
shingles become strings), and the permutation + minimum run as numpy array operations over
cache-sized blocks of a batch's shingles (``np.minimum.reduceat`` per document).
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from pipelines.core.digest import sha1_prefix32

WORD_RE = r"\w+"
EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's initial (and empty-set) value
_CHUNK_ROWS = 1 << 14  # shingle rows per permutation block: 16k x 128 x 4 B = 8 MB (cache-sized)

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


def _words(texts: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """Every text's lower-cased ``\\w+`` words, flat and in text order, and the word count of each text."""
    words = texts.fill_null("").str.to_lowercase().str.extract_all(WORD_RE)
    n_words = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    return words.explode().drop_nulls(), n_words


def _distinct(code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, one): ``inverse[i]`` numbers ``code[i]`` among the distinct values (dense, in value
    order) and ``code[one[j]]`` is the j-th distinct value (some occurrence of it). Polars' integer
    rank is about twice as fast as ``np.unique(..., return_index=True, return_inverse=True)`` here."""
    if len(code) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    inverse = pl.Series(code).rank("dense").to_numpy().astype(np.int64) - 1
    one = np.empty(int(inverse.max()) + 1, dtype=np.int64)
    one[inverse] = np.arange(len(code), dtype=np.int64)  # any occurrence will do: equal codes, equal k-grams
    return inverse, one


def _shingles(texts: pl.Series, k: int, min_words: int = 0):
    """The shingles of each text, as rows: (doc of each k-gram row, index of the row's distinct
    k-gram, the distinct k-grams' strings), the same for texts of 1..k-1 words (one shingle, all
    their words; one row each), and the word counts. Texts under ``min_words`` words get none.

    Distinct k-grams are found on integer codes (words numbered within the batch, k codes folded
    into one integer, re-numbered densely when the fold would overflow), so the only strings
    built are those of the distinct k-grams."""
    flat, n_words = _words(texts)
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), n_words)
    keep = n_words >= max(min_words, 1)
    vocab = flat.unique()
    wc = (flat.to_frame("w").join(vocab.to_frame("w").with_row_index("c"), on="w", how="left",
                                  maintain_order="left")["c"].to_numpy().astype(np.int64))
    # k-gram rows start at positions i with doc[i] == doc[i + k - 1] (all inside one text)
    long_doc = keep & (n_words >= k)
    starts = np.flatnonzero(long_doc[doc[: len(doc) - k + 1]] & (doc[: len(doc) - k + 1] == doc[k - 1:])) \
        if len(doc) >= k else np.zeros(0, dtype=np.int64)
    width = max(len(vocab), 1)
    code = wc[starts]
    for j in range(1, k):
        if int(code.max(initial=0)) + 1 > (np.iinfo(np.int64).max - width) // width:
            code = _distinct(code)[0]  # renumbered densely, in value order
        code = code * width + wc[starts + j]
    inverse, first = _distinct(code)
    pos = starts[first]
    grams = (pl.DataFrame({str(j): flat.gather(pos + j) for j in range(k)})
             .select(pl.concat_str([pl.col(str(j)) for j in range(k)], separator=" ")).to_series())
    short = np.flatnonzero(keep & (n_words > 0) & (n_words < k))
    lists = texts.fill_null("").gather(short).str.to_lowercase().str.extract_all(WORD_RE)
    return doc[starts], inverse.reshape(-1), grams, short, lists.list.join(" "), n_words


def shingle_frame(texts: pl.Series, k: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Distinct (doc, shingle) rows for a Series of texts, sorted, and the word count of each text."""
    docs, inverse, grams, short, short_s, n_words = _shingles(texts, k)
    rows = pl.concat([pl.DataFrame({"doc": docs, "s": grams.gather(inverse)}),
                      pl.DataFrame({"doc": short.astype(np.int64), "s": short_s})])
    return rows.unique().sort("doc", "s"), n_words


def _sha1_32(strings: pl.Series) -> np.ndarray:
    """datasketch's ``sha1_hash32`` of each string's UTF-8 bytes, then the fmix32 pre-mix: uint32.
    Once per distinct shingle, in Rust (polars-hash; a ``hashlib`` call per shingle was about 40% of
    the near-dup stage's CPU)."""
    return fmix32(sha1_prefix32(strings))


def signatures(texts: pl.Series, num_perm: int = 128, seed: int = 1, k: int = 3,
               min_words: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (n x num_perm, uint32) of each text's k-word shingle set, and word counts.

    Equal to ``datasketch.MinHash(num_perm, seed)`` updated with each shingle's UTF-8 bytes. A
    text without words gets the empty signature (all 0xFFFFFFFF), as datasketch does; so does a
    text under ``min_words`` words (its signature is not computed).
    """
    docs, inverse, grams, short, short_s, n_words = _shingles(texts, k, min_words)
    n = len(texts)
    sig = np.full((n, num_perm), EMPTY, dtype=np.uint32)
    a, b = permutations(num_perm, seed)
    if len(short):  # one shingle each: the signature is that shingle's permuted hash
        sig[short] = _sha1_32(short_s)[:, None] * a[None, :] + b[None, :]
    if len(docs) == 0:
        return sig, n_words
    hv = _sha1_32(grams)[inverse]
    start = 0
    while start < len(docs):  # rows of one text are contiguous (text order)
        end = min(start + _CHUNK_ROWS, len(docs))
        if end < len(docs):  # cut at a document boundary so reduceat sees whole documents
            cut = np.searchsorted(docs, docs[end], side="left")
            end = cut if cut > start else np.searchsorted(docs, docs[end], side="right")
        d = docs[start:end]
        # (num_perm, rows) so the per-document minimum reduces along contiguous memory;
        # uint32 arithmetic wraps mod 2**32 exactly like datasketch's.
        phv = np.multiply(a[:, None], hv[None, start:end])
        phv += b[:, None]
        bounds = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        sig[d[bounds]] = np.minimum.reduceat(phv, bounds, axis=1).T
        start = end
    return sig, n_words
