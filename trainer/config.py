"""Training configuration: one frozen dataclass, two presets, and an optional TOML file.

    # run.toml: every key optional; [train] keys are TrainConfig fields, [model] ModelConfig's
    preset = "gpt125m"
    [train]
    batch_size = 32
    [model]
    n_layer = 12

Precedence: preset < file < command-line flags. Unknown keys are errors that list the known ones.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field

from trainer.model import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 1337            # model init, data order and the forgetting regulariser
    batch_size: int = 8         # examples per micro-batch per rank
    grad_accum: int = 1         # micro-batches per optimizer step
    max_steps: int = 1000       # optimizer steps; also the length of the cosine schedule
    lr: float = 6e-4            # peak learning rate
    min_lr: float = 6e-5        # end of the cosine
    warmup_steps: int = 100     # linear warm-up from 0
    weight_decay: float = 0.1   # matrices only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0      # global norm; 0 = off
    eval_every: int = 250       # steps between validation passes (0 = never)
    eval_batches: int = 20      # validation batches per pass, per rank
    ckpt_every: int = 500       # steps between checkpoints (one is always written at the end)
    num_workers: int = 0        # DataLoader workers per rank (part of the data order: fixed per run)
    shuffle_block: int = 4      # row groups whose rows are shuffled together
    compile: bool = False       # torch.compile the model (CUDA; pads batches to static shapes)


PRESETS: dict[str, TrainConfig] = {
    # seconds on a CPU: for tests and `make demo`
    "tiny": TrainConfig(
        model=ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=128, history_size=128,
                          ssm_head_dim=16, ssm_state=8, ssm_chunk=32),
        batch_size=8, max_steps=60, lr=3e-3, min_lr=3e-4, warmup_steps=5, weight_decay=0.0,
        eval_every=0, eval_batches=4, ckpt_every=1000),
    # GPT-2 small shapes (about 125M parameters at a 32k vocabulary): for a GPU
    "gpt125m": TrainConfig(
        model=ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, history_size=1024,
                          ssm_head_dim=64, ssm_state=64, ssm_chunk=64),
        batch_size=16, grad_accum=4, max_steps=5000, lr=6e-4, min_lr=6e-5, warmup_steps=200,
        eval_every=250, eval_batches=20, ckpt_every=500),
}


def replace(cfg: TrainConfig, **changes) -> TrainConfig:
    """``cfg`` with TrainConfig and/or ModelConfig fields changed (model fields by their own name)."""
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    unknown = set(changes) - model_keys - train_keys
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(model_keys | train_keys)}")
    model = dataclasses.replace(cfg.model, **{k: v for k, v in changes.items() if k in model_keys})
    return dataclasses.replace(cfg, model=model, **{k: v for k, v in changes.items() if k in train_keys})


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


# Model settings added after checkpoints were first written, with the value every older checkpoint
# was trained with (so it loads, and runs, as the model it is; the defaults are for new models).
MODEL_KEYS_BEFORE = {"ssm_embed": False, "ssm_context_init": 0.0,  # issue #15: before the token-embedding input
                     "ssm_member": False, "ssm_handoff_readout": False}  # and before these (fourth attempt)


def from_dict(d: dict) -> TrainConfig:
    """The config a checkpoint saved (:func:`to_dict`); a model key it lacks takes the value of
    the model it was trained with (:data:`MODEL_KEYS_BEFORE`), not today's default."""
    d = dict(d)
    model = {**MODEL_KEYS_BEFORE, **d.pop("model", {})}
    return replace(TrainConfig(), **model, **d)


def load(path: str | None = None, preset: str | None = None) -> TrainConfig:
    """A preset (default ``tiny``, or the file's ``preset``), updated by the file's tables."""
    doc = {}
    if path:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        extra = set(doc) - {"preset", "train", "model"}
        if extra:
            raise ValueError(f"{path}: unknown top-level keys {sorted(extra)}; use preset, [train], [model]")
    name = preset or doc.get("preset", "tiny")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    try:
        return replace(PRESETS[name], **doc.get("train", {}), **doc.get("model", {}))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
