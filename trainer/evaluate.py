"""Evaluation: bits per byte on a validation split, per target role, with the history ablation.

Conditions (the handed-over states the window scan starts from):
  both          own and interlocutor states (the trained model as is)
  own_only      interlocutor state zeroed
  other_only    own state zeroed
  none          both zeroed: a plain GPT over the window
  random_pair   both states from another example of the batch (a different pair; should lose most of the gain)
  swapped       the streams exchanged *with their authorship*: the interlocutor's stream, its
                <self>/<other> role tokens exchanged, becomes the own stream, and vice versa.
                The social block is exactly symmetric (tests/test_trainer_model.py) and each
                stream says whose messages it holds through its role tokens, so exchanging only
                the states would change nothing but the window's membership decay; relabelling
                tells the model "the interlocutor's history is yours", which is the question the
                control asks (it should lose most of the gain).

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

from schemas.shards import ROLE_NAMES, ROLE_OTHER, ROLE_SELF
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
        raise ValueError("swapped needs the streams: use swapped_states()")
    raise ValueError(f"unknown condition {name!r}; known: {CONDITIONS}")


def role_swap_table(special_tokens: dict, vocab_size: int, device=None) -> torch.Tensor:
    """A token-id map exchanging ``<self>``/``<other>`` and ``<mention:self>``/``<mention:other>``
    (the names pipelines/stages/tokenizer.py gives them: ROLE_TOKENS, MENTION_ROLE_TOKENS)."""
    table = torch.arange(vocab_size, device=device)
    me, you = ROLE_NAMES[ROLE_SELF], ROLE_NAMES[ROLE_OTHER]
    for a, b in ((f"<{me}>", f"<{you}>"), (f"<mention:{me}>", f"<mention:{you}>")):
        if a not in special_tokens or b not in special_tokens:
            raise ValueError(f"the tokenizer has no {a!r}/{b!r} tokens; the swapped control needs them")
        ia, ib = int(special_tokens[a]), int(special_tokens[b])
        table[ia], table[ib] = ib, ia
    return table


def swapped_states(model: SociaLLM, batch: dict, swap: torch.Tensor) -> torch.Tensor:
    """States of the swapped control: each stream in the other's place, its roles exchanged."""
    return model.history_states(swap[batch["other"]], batch["other_seg"], swap[batch["own"]], batch["own_seg"],
                                batch.get("other_member"), batch.get("own_member"))  # V's messages are now "self"


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


def label_groups(labels: list) -> dict[str, np.ndarray]:
    """Boolean masks per ``key=value`` over examples' JSON ``target_labels`` (boolean values only).

    Diplomacy's ``{"sender_truthful": false, ...}`` gives ``sender_truthful=false`` (the sender
    lied) and ``sender_truthful=true``; examples without labels are in no group."""
    parsed = [json.loads(v) if v else {} for v in labels]
    groups: dict[str, np.ndarray] = {}
    for key in sorted({k for d in parsed for k, v in d.items() if isinstance(v, bool)}):
        for value in (True, False):
            groups[f"{key}={str(value).lower()}"] = np.array([d.get(key) is value for d in parsed], dtype=bool)
    return groups


def summarise(nll: dict, nbytes: np.ndarray, roles: np.ndarray, users: np.ndarray, mask: np.ndarray | None = None,
              n_boot: int = 200, seed: int = 0) -> dict:
    """Per condition: bpb (overall and by target role), gain over ``none`` and their 95% user-bootstrap
    intervals, on the examples of ``mask`` (all when None). ``nll``: {condition: per-example nats}."""
    m = np.ones(len(nbytes), dtype=bool) if mask is None else mask
    bpb = lambda v, k: float(v[k].sum() / nbytes[k].sum() / math.log(2)) if k.any() and nbytes[k].sum() else None  # noqa: E731
    out = {}
    for name, v in nll.items():
        ci, gain_ci = (_bootstrap(v[m], nbytes[m], users[m], nll["none"][m], n_boot, seed)
                       if n_boot and m.any() else (None, None))
        out[name] = {
            "bpb": bpb(v, m),
            "bpb_by_role": {r: bpb(v, m & (roles == i)) for i, r in enumerate(ROLE_NAMES)},
            "gain_vs_none": (bpb(nll["none"], m) - bpb(v, m)) if m.any() else None,
            "ci95": ci, "gain_ci95": gain_ci,
        }
    return out


@torch.no_grad()
def evaluate(run_dir: str, manifest: str, *, out: str | None = None, device: str = "auto", batch_size: int = 16,
             max_batches: int | None = None, n_boot: int = 200, seed: int = 0, conditions=CONDITIONS,
             per_example: bool = False, log=print) -> dict:
    """Evaluate ``run_dir``'s checkpoint on the split of ``manifest``; print a table, write JSON to ``out``.

    Returns {"conditions": {name: {"bpb", "bpb_by_role", "gain_vs_none", "ci95", "gain_ci95"}},
    "by_label": {"key=value": {"examples", "users", "conditions": ...}} (from the shards'
    ``target_labels``, e.g. Diplomacy's truthful/deceptive messages), "examples",
    "truncated_skipped", "users", "control_same_pair", ...}. ``conditions``: a subset to run
    (``none`` is always run: gains are against it). ``per_example``: also return
    ``"per_example"`` (not written to ``out``): numpy arrays ``nll`` {condition: nats},
    ``target_bytes``, ``target_role``, and lists ``self_id``, ``other_id``,
    ``target_message_id``, in evaluation order, for analyses of chosen subsets."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; known: {CONDITIONS}")
    conditions = [c for c in CONDITIONS if c in set(conditions) | {"none"}]
    env = setup(device)
    model, state = load_run(run_dir, env.device)
    man = data.load_manifest(manifest)
    data.check_same_data_identity(man, state["data"])
    c = model.cfg
    swap = role_swap_table(man.special_tokens, c.vocab_size, env.device) if "swapped" in conditions else None
    stream = data.ShardStream(man, batch_size, shuffle=False, block_size=c.block_size, history_size=c.history_size)
    nll = {k: [] for k in conditions}
    nbytes, roles, users, others, targets, labels, truncated, same_pair = [], [], [], [], [], [], 0, 0
    for i, batch in enumerate(stream):
        if max_batches is not None and i >= max_batches:
            break
        batch = data.to_device(batch, env.device)
        ok = (~batch["truncated"]).cpu().numpy()
        truncated += int((~ok).sum())
        with autocast(env.device):
            states = model.history_states(batch["own"], batch["own_seg"], batch["other"], batch["other_seg"],
                                          batch.get("own_member"), batch.get("other_member"))
            for name in conditions:
                if name == "swapped":
                    st, keep = swapped_states(model, batch, swap), torch.ones(2, states.size(1), device=env.device)
                else:
                    st, keep = _condition(name, states)
                _, tok_nll = model.window(batch["idx"], batch["roles"], st, batch["targets"], keep)
                nll[name].append(tok_nll.float().sum(1).double().cpu().numpy()[ok])
        ids = np.array(batch["self_id"])
        same_pair += int((ids == np.roll(ids, 1))[ok].sum())  # a control example that kept its own user
        nbytes.append(batch["target_bytes"].cpu().numpy()[ok])
        roles.append(batch["target_role"].cpu().numpy()[ok])
        users.append(ids[ok])
        others.extend(v for v, k in zip(batch["other_id"], ok) if k)
        targets.extend(v for v, k in zip(batch["target_message_id"], ok) if k)
        labels.extend(v for v, k in zip(batch.get("target_labels") or [None] * len(ok), ok) if k)
    if not nbytes or not sum(len(b) for b in nbytes):
        raise ValueError(f"{manifest}: no evaluable example (empty split, or every target cut by the window)")
    nbytes, roles, users = (np.concatenate(a) for a in (nbytes, roles, users))
    nll = {k: np.concatenate(v) for k, v in nll.items()}
    result = {"run": run_dir, "manifest": manifest, "examples": len(nbytes), "truncated_skipped": truncated,
              "users": len(np.unique(users)), "control_same_pair": same_pair,
              "conditions": summarise(nll, nbytes, roles, users, None, n_boot, seed), "by_label": {}}
    for group, mask in label_groups(labels).items():
        if mask.any():
            result["by_label"][group] = {"examples": int(mask.sum()), "users": len(np.unique(users[mask])),
                                         "conditions": summarise(nll, nbytes, roles, users, mask, n_boot, seed)}
    log(table(result))
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    if per_example:
        result["per_example"] = {"nll": nll, "target_bytes": nbytes, "target_role": roles, "self_id": list(users),
                                 "other_id": others, "target_message_id": targets}
    return result


def table(result: dict) -> str:
    """The ablation as a fixed-width text table."""
    fmt = lambda x: "    -" if x is None else f"{x:.4f}"  # noqa: E731
    head = f"{'condition':<12} {'bpb':>7} " + " ".join(f"{r:>7}" for r in ROLE_NAMES) + f" {'gain':>8}  gain 95% CI (users)"
    lines = [f"{result['examples']} examples, {result['users']} users, {result['truncated_skipped']} truncated skipped",
             head, "-" * len(head)]
    lines += _rows(result["conditions"], fmt)
    for group, g in result.get("by_label", {}).items():
        lines += ["", f"label {group}: {g['examples']} examples, {g['users']} users", head, "-" * len(head)]
        lines += _rows(g["conditions"], fmt)
    return "\n".join(lines)


def _rows(conds: dict, fmt) -> list[str]:
    # the gain's interval, not the bpb's: the paired gain is what the ablation is about
    out = []
    for name, r in conds.items():
        ci = "" if r["gain_ci95"] is None else f"[{r['gain_ci95'][0]:+.4f}, {r['gain_ci95'][1]:+.4f}]"
        out.append(f"{name:<12} {fmt(r['bpb']):>7} " + " ".join(f"{fmt(r['bpb_by_role'][k]):>7}" for k in ROLE_NAMES)
                   + f" {r['gain_vs_none']:+8.4f}  {ci}")
    return out
