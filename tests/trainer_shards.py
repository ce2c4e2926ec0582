"""Token shards for the trainer tests, built from the real Diplomacy sample.

Fallback used while the pipeline's shard stage is incomplete: it writes ``schemas.SHARD`` rows
and a per-split ``manifest.json`` exactly as docs/trainer.md describes the contract, from real
messages tokenised with a small byte-level BPE trained on them (special tokens from
``pipelines.tokenizer``). Each Diplomacy dialog is between two players: every message from the
second onwards is a target, from the perspective (speaker, receiver); the window is the last
few messages, the own/interlocutor streams are each player's earlier messages in the dialog.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.tokenizer import END, GAP_ORDINAL, MSG, PAD, ROLE_TOKENS, SPECIAL_TOKENS
from schemas import SHARD, SHARD_SCHEMA_VERSION
from schemas.shards import ROLE_OTHER, ROLE_SELF

ROW_GROUP = 32
WINDOW_MSGS, STREAM_MSGS, MAX_BODY, PER_DIALOG = 4, 6, 40, 12

_BUILT: dict[str, Path] = {}


def _tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def _examples(dialogs: list[dict], tok: Tokenizer) -> list[dict]:
    sid = {t: tok.token_to_id(t) for t in (MSG, END, GAP_ORDINAL, *ROLE_TOKENS)}
    rows = []
    for d in dialogs:
        bodies = [e.ids[:MAX_BODY] for e in tok.encode_batch(d["messages"])]
        nbytes = [len(m.encode()) for m in d["messages"]]
        speakers = d["speakers"]
        ids = [f"dip:{d['game_id']}:{d['absolute_message_index'][i]}" for i in range(len(bodies))]
        for i in range(1, min(len(bodies), PER_DIALOG + 1)):
            me, you = speakers[i], d["receivers"][i]
            role = lambda j: ROLE_SELF if speakers[j] == me else ROLE_OTHER  # noqa: E731
            lo = max(0, i - WINDOW_MSGS + 1)

            def render(js):
                toks, offs, roles_tok, roles_msg = [], [], [], []
                for j in js:
                    r = role(j)
                    m = [sid[MSG], sid[ROLE_TOKENS[r]], sid[GAP_ORDINAL], *bodies[j], sid[END]]
                    offs.append(len(toks))
                    toks += m
                    roles_tok += [r] * len(m)
                    roles_msg.append(r)
                return toks, offs + [len(toks)], roles_tok, roles_msg

            win, woff, wroles, _ = render(range(lo, i + 1))
            mask = [0] * woff[-2] + [0, 0, 0] + [1] * (len(win) - woff[-2] - 3)  # target body + </msg>
            own_js = [j for j in range(lo) if speakers[j] == me][-STREAM_MSGS:]
            oth_js = [j for j in range(lo) if speakers[j] == you][-STREAM_MSGS:]
            own, ooff, _, oroles = render(own_js)
            oth, xoff, _, xroles = render(oth_js)
            rows.append({
                SHARD.example_id: f"ex:{ids[i]}:{you}", SHARD.self_id: f"dip:{d['game_id']}:{me}",
                SHARD.other_id: f"dip:{d['game_id']}:{you}", SHARD.thread_id: f"dip:{d['game_id']}:{min(me, you)}-{max(me, you)}",
                SHARD.timeline_id: f"ordinal:dip:{d['game_id']}", SHARD.target_message_id: ids[i],
                SHARD.time_kind: "ordinal",
                SHARD.window_tokens: win, SHARD.window_roles: wroles, SHARD.window_loss_mask: mask,
                SHARD.window_msg_offsets: woff, SHARD.window_msg_times: list(range(lo, i + 1)),
                SHARD.window_msg_bytes: [nbytes[j] for j in range(lo, i + 1)],
                SHARD.window_msg_ids: [ids[j] for j in range(lo, i + 1)],
                SHARD.own_tokens: own, SHARD.own_msg_offsets: ooff, SHARD.own_msg_times: own_js, SHARD.own_msg_roles: oroles,
                SHARD.other_tokens: oth, SHARD.other_msg_offsets: xoff, SHARD.other_msg_times: oth_js,
                SHARD.other_msg_roles: xroles,
                SHARD.n_tokens: len(win) + len(own) + len(oth), SHARD.n_target_tokens: sum(mask),
                SHARD.target_bytes: nbytes[i], SHARD.weight: 1.0,
            })
    return rows


def _write_split(rows: list[dict], out: Path, split: str, tok_sha: str, vocab: int, specials: dict, files: int) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = SHARD.conform(pa.Table.from_pylist(rows))
    table = table.take(np.random.default_rng(0).permutation(table.num_rows))  # the pipeline shuffles globally
    shards = []
    for k, part in enumerate(np.array_split(np.arange(table.num_rows), files)):
        name = f"part-{k:05d}.parquet"
        pq.write_table(table.take(part), out / name, row_group_size=ROW_GROUP, compression="zstd")
        meta = pq.ParquetFile(out / name).metadata
        shards.append({"path": name, "rows": len(part), "tokens": int(sum(table.take(part)[SHARD.n_tokens].to_pylist())),
                       "bytes": os.path.getsize(out / name),
                       "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest(),
                       "row_groups": [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]})
    manifest = {"schema_version": SHARD_SCHEMA_VERSION, "split": split, "tokenizer_sha256": tok_sha,
                "vocab_size": vocab, "token_dtype": "int32", "special_tokens": specials, "time_kind": "ordinal",
                "rows": table.num_rows, "tokens": sum(s["tokens"] for s in shards),
                "target_tokens": int(sum(table[SHARD.n_target_tokens].to_pylist())), "shards": shards}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return str(out / "manifest.json")


def build_test_shards(real: Path, out: Path) -> dict[str, str]:
    """Write train and validation shards under ``out``; return {split: manifest path}. Cached per process."""
    key = str(out)
    if key not in _BUILT:
        dialogs = [json.loads(line) for line in open(real / "diplomacy" / "train.jsonl", encoding="utf-8")]
        tok = _tokenizer([m for d in dialogs for m in d["messages"]])
        tok_json = tok.to_str()
        (out / "tokenizer.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "tokenizer.json").write_text(tok_json)
        sha = hashlib.sha256(tok_json.encode()).hexdigest()
        specials = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
        assert specials[PAD] == 0
        train = [d for d in dialogs if d["game_id"] % 6 != 0]
        val = [d for d in dialogs if d["game_id"] % 6 == 0]
        _write_split(_examples(train, tok), out / "train", "train", sha, tok.get_vocab_size(), specials, files=3)
        _write_split(_examples(val, tok), out / "validation", "validation", sha, tok.get_vocab_size(), specials, files=1)
        _BUILT[key] = out
    return {s: str(out / s / "manifest.json") for s in ("train", "validation")}
