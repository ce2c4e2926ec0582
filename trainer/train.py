"""The training loop: one plain loop over optimizer steps.

Single device by default; under ``torchrun`` (RANK/WORLD_SIZE in the environment) one process
per GPU with DDP. bf16 autocast on CUDA, fp32 on the CPU. A checkpoint holds everything an
exact resume needs: model, optimizer, step, loader cursor, RNG states, config and the shards'
identity (schema version, tokenizer hash).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from trainer import config as cfgmod
from trainer import data
from trainer.config import TrainConfig
from trainer.model import SociaLLM

H100_BF16_PEAK = 989e12  # dense FLOP/s, for MFU
CKPT = "ckpt.pt"


@dataclass
class Env:
    rank: int
    world: int
    device: torch.device
    ddp: bool

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Env:
    """The process's place: torchrun's environment if present, else one local device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ["LOCAL_RANK"])
        cuda = torch.cuda.is_available() and device != "cpu"
        if cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        return Env(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if cuda else "cpu"), True)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return Env(0, 1, torch.device(device), False)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine down to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def all_sum(x: torch.Tensor, env: Env) -> torch.Tensor:
    if env.ddp:
        dist.all_reduce(x)
    return x


class Batches:
    """Training batches across epochs, counting what the main process consumed (the resume cursor)."""

    def __init__(self, manifest, cfg: TrainConfig, env: Env, epoch: int = 0, consumed: int = 0):
        self.m, self.cfg, self.env = manifest, cfg, env
        self.epoch, self.consumed = epoch, consumed
        self._it = None

    def state(self) -> dict:
        c = self.cfg
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": c.seed, "world_size": self.env.world,
                "num_workers": c.num_workers, "batch_size": c.batch_size}

    def _open(self):
        c = self.cfg
        stream = data.ShardStream(self.m, c.batch_size, seed=c.seed, epoch=self.epoch, rank=self.env.rank,
                                  world_size=self.env.world, num_workers=c.num_workers, start=self.consumed,
                                  shuffle_block=c.shuffle_block, block_size=c.model.block_size,
                                  history_size=c.model.history_size, static=c.compile)
        return iter(data.make_loader(stream))

    def next(self) -> dict:
        for _ in range(2):
            if self._it is None:
                self._it = self._open()
            batch = next(self._it, None)
            if batch is not None:
                self.consumed += 1
                return batch
            self._it, self.epoch, self.consumed = None, self.epoch + 1, 0  # epoch over: next permutation
        raise ValueError(f"{self.m.url}: an epoch yields no batch; see the loader's error above")


@torch.no_grad()
def validate(model: SociaLLM, manifest, cfg: TrainConfig, env: Env, max_batches: int) -> dict:
    """Validation loss and bits per byte: each rank its own slice, sums all-reduced."""
    model.eval()
    stream = data.ShardStream(manifest, cfg.batch_size, rank=env.rank, world_size=env.world, shuffle=False,
                              block_size=cfg.model.block_size, history_size=cfg.model.history_size)
    sums = torch.zeros(3, dtype=torch.float64, device=env.device)      # nll (nats), targets, bytes
    for i, batch in enumerate(stream):
        if i >= max_batches:
            break
        batch = data.to_device(batch, env.device)
        ok = ~batch["truncated"]                                         # bytes are only right for whole targets
        with autocast(env.device):
            nll = model(batch).float()
        sums += torch.stack([nll.sum(1)[ok].sum().double(), batch["n_target"][ok].sum().double(),
                             batch["target_bytes"][ok].sum().double()])
    all_sum(sums, env)
    model.train()
    nll, n, nbytes = sums.tolist()
    return {"val_loss": nll / max(n, 1), "val_bpb": nll / math.log(2) / max(nbytes, 1), "val_targets": int(n)}


def save(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact


def train(cfg: TrainConfig, manifest: str, out_dir: str, *, val_manifest: str | None = None, device: str = "auto",
          resume: bool = False, stop_at: int | None = None, log=print) -> dict:
    """Train on the shards of ``manifest`` (a split's manifest.json); write checkpoints to ``out_dir``.

    ``resume``: continue from ``out_dir/ckpt.pt`` exactly (same losses as an uninterrupted run);
    its config wins over ``cfg`` except ``max_steps``. ``stop_at``: stop (and checkpoint) after
    this many steps without changing the schedule. Returns {"losses", "steps", "tokens_per_s",
    "checkpoint", "val", ...}; rank 0 also appends one JSON line per step to ``out_dir/log.jsonl``.
    """
    env = setup(device)
    man = data.load_manifest(manifest)
    ckpt_path = os.path.join(out_dir, CKPT)
    state = None
    if resume and os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        data.check_same_data_identity(man, state["data"])
        cfg = cfgmod.replace(cfgmod.from_dict(state["config"]), max_steps=cfg.max_steps)
        ld = state["loader"]
        if (ld["world_size"], ld["num_workers"], ld["batch_size"]) != (env.world, cfg.num_workers, cfg.batch_size):
            raise ValueError(f"{ckpt_path}: saved with world size {ld['world_size']}, {ld['num_workers']} workers, "
                             f"batch {ld['batch_size']}; resume with the same (the data order depends on them)")
    cfg = cfgmod.replace(cfg, vocab_size=man.vocab_size)
    if env.master:
        os.makedirs(out_dir, exist_ok=True)

    torch.manual_seed(cfg.seed)                                         # same initial weights on every rank
    model = SociaLLM(cfg.model).to(env.device)
    fused = env.device.type == "cuda"
    opt = torch.optim.AdamW(model.param_groups(cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
    step = 0
    batches = Batches(man, cfg, env)
    torch.manual_seed(cfg.seed + 1 + env.rank)                         # the forgetting regulariser's draws, per rank
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        batches = Batches(man, cfg, env, state["loader"]["epoch"], state["loader"]["consumed"])
        torch.set_rng_state(state["rng"]["cpu"][env.rank])
        if env.device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state(state["rng"]["cuda"][env.rank])
    raw = model
    if cfg.compile:
        model = torch.compile(model)
    if env.ddp:
        model = DDP(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    val = data.load_manifest(val_manifest) if val_manifest else None
    if val:
        data.check_same_data_identity(val, man.identity())

    def checkpoint():
        rng = {"cpu": [torch.get_rng_state()], "cuda": [torch.cuda.get_rng_state()] if env.device.type == "cuda" else None}
        if env.ddp:  # every rank's RNG, so each resumes its own stream of forgetting draws
            gathered = [None] * env.world
            dist.all_gather_object(gathered, rng)
            rng = {"cpu": [g["cpu"][0] for g in gathered],
                   "cuda": [g["cuda"][0] for g in gathered] if rng["cuda"] else None}
        if env.master:
            save(ckpt_path, {"model": raw.state_dict(), "optimizer": opt.state_dict(), "step": step,
                             "loader": batches.state(), "rng": rng, "config": cfgmod.to_dict(cfg),
                             "data": man.identity(), "special_tokens": man.special_tokens})

    losses, speeds, last_val = [], [], None
    end = cfg.max_steps if stop_at is None else min(stop_at, cfg.max_steps)
    logf = open(os.path.join(out_dir, "log.jsonl"), "a") if env.master else None
    if env.master:
        log(f"SociaLLM {raw.n_params() / 1e6:.2f}M parameters on {env.device} x{env.world}; "
            f"steps {step}..{end} of {cfg.max_steps}; batch {cfg.batch_size}x{cfg.grad_accum}x{env.world}")
    model.train()
    while step < end:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        micro = [data.to_device(batches.next(), env.device) for _ in range(cfg.grad_accum)]
        # normalise by the target tokens of the whole optimizer step, across micro-batches and ranks
        n_target = all_sum(sum((b["weight"] * b["n_target"]).sum() for b in micro).float(), env)
        loss_sum = torch.zeros((), device=env.device)
        for i, b in enumerate(micro):
            sync = contextlib.nullcontext() if (not env.ddp or i == len(micro) - 1) else model.no_sync()
            with sync, autocast(env.device):
                nll = model(b)
                # DDP averages gradients over ranks: multiply back to get the global sum / n_target
                loss = (nll * b["weight"][:, None]).sum() / n_target * env.world
            loss.backward()
            loss_sum += loss.detach() / env.world
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_val = all_sum(loss_sum, env).item()                       # .item() also waits for the GPU
        dt = time.perf_counter() - t0
        step += 1
        tok_w = sum(int((b["idx"] != man.pad_id).sum()) for b in micro) * env.world
        tok_h = sum(int((b["own_seg"] >= 0).sum() + (b["other_seg"] >= 0).sum()) for b in micro) * env.world
        rec = {"step": step, "loss": loss_val, "lr": lr, "ms": dt * 1000, "tok_s": (tok_w + tok_h) / dt,
               "window_tok_s": tok_w / dt, "grad_norm": None if norm is None else float(norm)}
        if env.device.type == "cuda":
            T, H = micro[0]["idx"].size(1), micro[0]["own"].size(1)
            rec["mfu"] = raw.flops(tok_w, T, tok_h, H) / dt / (H100_BF16_PEAK * env.world)
        losses.append(loss_val)
        speeds.append(rec["tok_s"])
        if val and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            last_val = validate(raw, val, cfg, env, cfg.eval_batches)
            rec.update(last_val)
        if env.master:
            line = (f"step {step}/{cfg.max_steps} | loss {loss_val:.4f} | lr {lr:.2e} | {rec['ms']:.0f} ms | "
                    f"{rec['tok_s']:,.0f} tok/s ({rec['window_tok_s']:,.0f} window)")
            if "mfu" in rec:
                line += f" | mfu {100 * rec['mfu']:.1f}%"
            if "val_bpb" in rec:
                line += f" | val loss {rec['val_loss']:.4f} bpb {rec['val_bpb']:.4f}"
            log(line)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
        if step % cfg.ckpt_every == 0 and step < end:
            checkpoint()
    checkpoint()
    if logf:
        logf.close()
    steady = speeds[1:] or speeds                                       # the first step pays warm-up costs
    return {"steps": step, "losses": losses, "final_loss": losses[-1] if losses else None,
            "tokens_per_s": sum(steady) / max(1, len(steady)), "checkpoint": ckpt_path, "val": last_val,
            "n_params": raw.n_params(), "device": str(env.device), "world_size": env.world}


def sibling_validation(manifest: str) -> str | None:
    """``.../shards/train/manifest.json`` -> ``.../shards/validation/manifest.json`` if it exists."""
    parts = manifest.replace("\\", "/").rsplit("/", 2)
    if len(parts) == 3:
        cand = f"{parts[0]}/validation/{parts[2]}"
        if "://" not in cand and os.path.exists(cand):
            return cand
    return None


def train_demo(manifest: str, out_dir: str, steps: int = 30, log=print) -> dict:
    """``make demo``: the tiny preset for ``steps`` steps on the CPU; returns train()'s summary."""
    cfg = cfgmod.replace(cfgmod.PRESETS["tiny"], max_steps=steps)
    return train(cfg, manifest, out_dir, val_manifest=sibling_validation(manifest), device="cpu", log=log)
