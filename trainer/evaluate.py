"""Evaluation: bits per byte on a validation split, per target role, with the history ablation.

Conditions (the handed-over states the window scan starts from):
  both          own and interlocutor states (the trained model as is)
  own_only      interlocutor state zeroed
  other_only    own state zeroed
  none          both zeroed: a plain GPT over the window
  random_pair   both states from another example of the batch (a different pair; should lose most of the gain)
  swapped       own and interlocutor states exchanged

Bits per byte = sum of target nll (nats, body and end token) / ln 2 / UTF-8 bytes of the target
bodies (``target_bytes``). Examples whose target was cut by the window limit are left out (their
bytes would not match their tokens) and counted. Confidence intervals: bootstrap over users
(``self_id``), 95%, for each condition and for its gain over ``none`` (paired).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

from schemas.shards import ROLE_NAMES
from trainer import config as cfgmod
from trainer import data
from trainer.model import SociaLLM
from trainer.train import CKPT, autocast, setup

CONDITIONS = ("both", "own_only", "other_only", "none", "random_pair", "swapped")


def _condition(name: str, states: torch.Tensor):
    """(states (2, B, ...), keep (2, B)) for one condition."""
    B = states.size(1)
    ones = torch.ones(2, B, device=states.device)
    if name == "both":
        return states, ones
    if name == "own_only":
        return states, torch.stack([ones[0], 0 * ones[1]])
    if name == "other_only":
        return states, torch.stack([0 * ones[0], ones[1]])
    if name == "none":
        return states, 0 * ones
    if name == "random_pair":
        return states.roll(1, dims=1), ones  # example i gets example i-1's streams
    if name == "swapped":
        return states.flip(0), ones
    raise ValueError(f"unknown condition {name!r}; known: {CONDITIONS}")


def load_run(run_dir: str, device) -> tuple[SociaLLM, dict]:
    path = os.path.join(run_dir, CKPT)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no checkpoint; train first (`socialcorpus train --out {run_dir}`)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = cfgmod.from_dict(state["config"])
    model = SociaLLM(cfg.model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def _bootstrap(nll, nbytes, users, base_nll, n_boot: int, seed: int):
    """95% intervals of bpb and of the paired gain over ``base`` (bits per byte), resampling users."""
    uniq, inv = np.unique(users, return_inverse=True)
    per_user = lambda v: np.bincount(inv, weights=v, minlength=len(uniq))  # noqa: E731
    un, ub, ubase = per_user(nll), per_user(nbytes), per_user(base_nll)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
    counts = np.stack([np.bincount(d, minlength=len(uniq)) for d in draws])   # (n_boot, users)
    bpb = counts @ un / (counts @ ub) / math.log(2)
    gain = (counts @ ubase - counts @ un) / (counts @ ub) / math.log(2)
    q = lambda a: [float(np.quantile(a, 0.025)), float(np.quantile(a, 0.975))]  # noqa: E731
    return q(bpb), q(gain)


@torch.no_grad()
def evaluate(run_dir: str, manifest: str, *, out: str | None = None, device: str = "auto", batch_size: int = 16,
             max_batches: int | None = None, n_boot: int = 200, seed: int = 0, log=print) -> dict:
    """Evaluate ``run_dir``'s checkpoint on the split of ``manifest``; print a table, write JSON to ``out``.

    Returns {"conditions": {name: {"bpb", "bpb_by_role", "gain_vs_none", "ci95", "gain_ci95"}},
    "examples", "truncated_skipped", "users", "control_same_pair", ...}."""
    env = setup(device)
    model, state = load_run(run_dir, env.device)
    man = data.load_manifest(manifest)
    data.check_same_data_identity(man, state["data"])
    c = model.cfg
    stream = data.ShardStream(man, batch_size, shuffle=False, block_size=c.block_size, history_size=c.history_size)
    nll = {k: [] for k in CONDITIONS}
    nbytes, roles, users, truncated, same_pair = [], [], [], 0, 0
    for i, batch in enumerate(stream):
        if max_batches is not None and i >= max_batches:
            break
        batch = data.to_device(batch, env.device)
        ok = (~batch["truncated"]).cpu().numpy()
        truncated += int((~ok).sum())
        with autocast(env.device):
            states = model.history_states(batch["own"], batch["own_seg"], batch["other"], batch["other_seg"])
            for name in CONDITIONS:
                st, keep = _condition(name, states)
                _, tok_nll = model.window(batch["idx"], batch["roles"], st, batch["targets"], keep)
                nll[name].append(tok_nll.float().sum(1).double().cpu().numpy()[ok])
        ids = np.array(batch["self_id"])
        same_pair += int((ids == np.roll(ids, 1))[ok].sum())  # a control example that kept its own user
        nbytes.append(batch["target_bytes"].cpu().numpy()[ok])
        roles.append(batch["target_role"].cpu().numpy()[ok])
        users.append(ids[ok])
    if not nbytes or not sum(len(b) for b in nbytes):
        raise ValueError(f"{manifest}: no evaluable example (empty split, or every target cut by the window)")
    nbytes, roles, users = (np.concatenate(a) for a in (nbytes, roles, users))
    nll = {k: np.concatenate(v) for k, v in nll.items()}
    result = {"run": run_dir, "manifest": manifest, "examples": int(len(nbytes)), "truncated_skipped": truncated,
              "users": int(len(np.unique(users))), "control_same_pair": same_pair, "conditions": {}}
    bpb = lambda v, m: float(v[m].sum() / nbytes[m].sum() / math.log(2)) if m.any() else None  # noqa: E731
    everyone = np.ones(len(nbytes), dtype=bool)
    for name in CONDITIONS:
        ci, gain_ci = _bootstrap(nll[name], nbytes, users, nll["none"], n_boot, seed) if n_boot else (None, None)
        result["conditions"][name] = {
            "bpb": bpb(nll[name], everyone),
            "bpb_by_role": {r: bpb(nll[name], roles == i) for i, r in enumerate(ROLE_NAMES)},
            "gain_vs_none": bpb(nll["none"], everyone) - bpb(nll[name], everyone),
            "ci95": ci, "gain_ci95": gain_ci,
        }
    log(table(result))
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    return result


def table(result: dict) -> str:
    """The ablation as a fixed-width text table."""
    fmt = lambda x: "    -" if x is None else f"{x:.4f}"  # noqa: E731
    head = f"{'condition':<12} {'bpb':>7} " + " ".join(f"{r:>7}" for r in ROLE_NAMES) + f" {'gain':>8}  95% CI (users)"
    lines = [f"{result['examples']} examples, {result['users']} users, {result['truncated_skipped']} truncated skipped",
             head, "-" * len(head)]
    for name, r in result["conditions"].items():
        ci = "" if r["ci95"] is None else f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"
        lines.append(f"{name:<12} {fmt(r['bpb']):>7} " + " ".join(f"{fmt(r['bpb_by_role'][k]):>7}" for k in ROLE_NAMES)
                     + f" {r['gain_vs_none']:+8.4f}  {ci}")
    return "\n".join(lines)
