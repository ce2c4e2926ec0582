"""What the trainer reads: the tokenizer and the Parquet token shards with their manifests."""

from __future__ import annotations

from assets.factory import stage_asset

GROUP = "training"

tokenizer = stage_asset("tokenizer", "tokenizer", GROUP, ["timeline", "pair_examples"],
                        "Byte-level BPE (tokenizer.json) trained on the anonymised train split, with special "
                        "tokens for message boundaries, roles, placeholders and time gaps.")
token_shards = stage_asset("shards", "token_shards", GROUP, ["timeline", "pair_examples", "tokenizer"],
                           "Tokenised examples in shuffled zstd Parquet shards per split, with manifest.json. "
                           "Its metadata shows one validation example decoded (`example`).")

ASSETS = [tokenizer, token_shards]
