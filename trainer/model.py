"""SociaLLM, top to bottom: a GPT over the conversation window plus one social state-space block.

Reading order:
1. ModelConfig            the numbers
2. RMSNorm, rotary         small pieces
3. Attention, MLP, Block   a pre-norm GPT block (the social branch can join the attention branch)
4. SocialSSM               the Mamba-2 style mixer shared by both roles
5. SociaLLM                history streams -> states -> conversation window -> logits

Shapes: B examples, T window tokens, H history tokens per stream, C model width,
h SSM heads of width P, N state size. The two roles (own = 0, other = 1) are stacked as a
leading axis of 2 or as a doubled batch 2B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from schemas.shards import ROLE_OTHER, ROLE_SELF
from trainer.ssm import scan_chunked


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 512      # replaced by the manifest's vocabulary size at training time
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256      # window tokens seen (longer windows keep their last tokens)
    history_size: int = 256    # tokens per history stream (longer streams keep their last tokens)
    ssm_layer: int = -1        # k: the layer the social block joins; -1 = n_layer // 2
    ssm_expand: int = 2        # inner width = ssm_expand * n_embd
    ssm_head_dim: int = 32     # P; heads h = inner width // P
    ssm_state: int = 16        # N
    ssm_chunk: int = 64        # chunk length of the matmul-form scan
    forget_p: float = 0.15     # training only: zero each role's handed-over state with this probability
    ssm_embed: bool = True     # the social block reads the token embeddings, the residual stream grows in (issue #15)
    ssm_context_init: float = 0.0  # with ssm_embed: initial gain of the residual stream's part of its input
    ssm_member: bool = False   # the social block's input marks the tokens of the scanning side's person (issue #15)
    ssm_handoff_readout: bool = False  # the handed-over state's readout also through its own norm and zero-init projection
    rope_base: float = 10000.0

    @property
    def k(self) -> int:
        return self.n_layer // 2 if self.ssm_layer < 0 else self.ssm_layer


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, eps=1e-6)


def rotary(T: int, head_dim: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim // 2) for rotary positions 0..T-1."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    # x (B, nh, T, hd): rotate the two halves of each head as complex pairs
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, mask=None):
        Bsz, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(Bsz, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # mask None: plain causal (flash kernels); else a boolean (B, 1, T, T) "may attend" mask
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.c_proj(y.transpose(1, 2).reshape(Bsz, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1, self.attn = RMSNorm(cfg.n_embd), Attention(cfg)
        self.ln_2, self.mlp = RMSNorm(cfg.n_embd), MLP(cfg)

    def forward(self, x, cos, sin, mask=None, parallel=None):
        # `parallel`: a branch computed from ln_1(x) that joins attention's (the social block)
        x = x + self.attn(self.ln_1(x), cos, sin, mask) + (0 if parallel is None else parallel)
        return x + self.mlp(self.ln_2(x))


def at_least_fp32(t):
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class SocialSSM(nn.Module):
    """One Mamba-2 style mixer serving both roles with the same weights.

    No short convolution (unlike Mamba-2): a convolution would mix the tokens the
    interlocutor-side scan must skip, and its state would also need handing over.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d_inner = cfg.ssm_expand * cfg.n_embd
        assert d_inner % cfg.ssm_head_dim == 0, "ssm_expand * n_embd must be a multiple of ssm_head_dim"
        self.d_inner, self.P, self.N = d_inner, cfg.ssm_head_dim, cfg.ssm_state
        self.h, self.chunk = d_inner // cfg.ssm_head_dim, cfg.ssm_chunk
        # one projection gives the gate z, the input x, B, C and the step size dt per head
        self.in_proj = nn.Linear(cfg.n_embd, 2 * d_inner + 2 * self.N + self.h, bias=False)
        dt = torch.exp(torch.empty(self.h).uniform_(math.log(1e-3), math.log(0.1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))   # inverse softplus: softplus(bias) = dt
        self.A_log = nn.Parameter(torch.log(torch.empty(self.h).uniform_(1, 16)))  # decay rate A = -exp(A_log)
        self.D = nn.Parameter(torch.ones(self.h))                         # skip connection per head
        self.norm = RMSNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, cfg.n_embd, bias=False)       # zeroed by SociaLLM's init
        # ssm_embed: the token embeddings' own path in, and a per-channel gain (a vector: never
        # weight-decayed) on the residual stream's part, zero at init
        self.embed_norm = RMSNorm(cfg.n_embd) if cfg.ssm_embed else None
        self.context_gain = nn.Parameter(torch.full((cfg.n_embd,), float(cfg.ssm_context_init))) if cfg.ssm_embed else None
        # ssm_member: a vector added to the input of the tokens whose author is the scanning side's person
        self.member = nn.Parameter(torch.randn(cfg.n_embd)) if cfg.ssm_member else None
        self.handoff_norm = RMSNorm(d_inner) if cfg.ssm_handoff_readout else None
        self.handoff_proj = nn.Linear(d_inner, cfg.n_embd, bias=False) if cfg.ssm_handoff_readout else None

    def inputs(self, u, e):
        """What the block reads, for history and window tokens alike: u = ln_1(residual stream at layer
        k) and e = the token embeddings (both (b, l, C)). With ``ssm_embed``: norm(e) + context_gain * u.

        The gain starts at zero, so at first what a token writes into the state and what it queries
        depend on the token alone: the lower blocks move a lot while they learn (more than their initial
        norm in the first few hundred steps), and a block reading only them must chase a moving input.
        The context (e.g. which message, whose role) grows in as the gain does (docs/trainer.md, issue #15)."""
        return u if self.embed_norm is None else self.context_gain * u + self.embed_norm(e)

    def _project(self, u, member=None, doubled=False):
        # u (b, l, C), member (b', l) 0/1 or None -> z, x (b', l, h, P); B, C (b', l, N); dt (b', l, h); all fp32.
        # doubled: b' = 2b, the projection of u serving both roles (computed once).
        proj = self.in_proj(u)
        if doubled:
            proj = proj.expand(2, *proj.shape).flatten(0, 1)
        if self.member is not None:  # in_proj is linear: in_proj(u + m w) = in_proj(u) + m in_proj(w)
            if member is None:
                raise ValueError("ssm_member: the streams' membership (own_member/other_member, trainer.data.collate) is needed")
            proj = proj + member[..., None].to(proj.dtype) * self.in_proj(self.member.to(proj.dtype))
        z, x, B, C, dt = at_least_fp32(proj).split([self.d_inner, self.d_inner, self.N, self.N, self.h], dim=-1)
        dt = F.softplus(dt + self.dt_bias)
        return z, x.unflatten(-1, (self.h, self.P)), B, C, dt

    def _scan(self, x, dt, B, C, state=None, need_y=True):
        A = -torch.exp(self.A_log.to(x.dtype))
        # the scan stays fp32 under bf16 autocast: decays multiply over thousands of steps
        with torch.autocast(device_type=x.device.type, enabled=False):
            return scan_chunked(x, dt, A, B, C, state, chunk=self.chunk, need_y=need_y)

    def final_state(self, u, step, member=None):
        """Scan a stream: u (b, l, C), step (b, l) in {0, 1} (0 = skip), member (b, l) 0/1 -> final state (b, h, P, N)."""
        _, x, B, C, dt = self._project(u, member)
        return self._scan(x, dt * step[..., None], B, C, need_y=False)[1]

    def forward(self, u, states, steps):
        """The window pass: u (B, T, C); states (2, B, h, P, N); steps (2, B, T) -> (B, T, C).

        Role r's scan starts from its handed-over state and steps only on role r's tokens.
        Both roles run as one doubled batch and go through the same output projection, then
        are summed, so swapping (own, other) states together with the roles changes nothing.
        ``ssm_member``: the tokens role r steps on are its members (their input carries the member
        vector, as the stream person's tokens did in the history scan), so each role reads its state
        with a query that says whether the current token is its person's. ``ssm_handoff_readout``:
        the handed-over state's part of the readout, ``C_t (decay to t) S_0`` (a scan of x = 0 from
        the state), also goes through its own RMSNorm and a zero-initialised projection, so it is
        O(1) at once instead of ~0.1% of the skip ``D x`` (docs/trainer.md, issue #15, fourth attempt).
        """
        # computed once, used by both roles (2B); with ssm_member a role's members are the tokens it steps on
        z, x, B, C, dt = self._project(u, steps.flatten(0, 1), doubled=True)
        dt = dt * steps.flatten(0, 1)[..., None].float()
        y, _ = self._scan(x, dt, B, C, states.flatten(0, 1).to(x.dtype))
        y = y + self.D[:, None] * x                                       # (2B, T, h, P)
        y = self.norm(y.flatten(-2) * F.silu(z))                          # gated norm, as in Mamba-2
        out = self.out_proj(y.to(u.dtype))                                # (2B, T, C)
        if self.handoff_proj is not None:  # the handed-over state's part of C S, on its own scale
            y_h, _ = self._scan(torch.zeros_like(x), dt, B, C, states.flatten(0, 1).to(x.dtype))
            out = out + self.handoff_proj(self.handoff_norm(y_h.flatten(-2)).to(u.dtype))
        return out.unflatten(0, (2, -1)).sum(0)                           # own + other


class SociaLLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert 0 <= cfg.k < cfg.n_layer, f"ssm_layer {cfg.k} outside 0..{cfg.n_layer - 1}"
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.social = SocialSSM(cfg)
        self.ln_f = RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight                            # tied, as in GPT-2
        for name, p in self.named_parameters():
            if p.dim() == 2:  # matrices: GPT-2 init, residual projections scaled by depth
                std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
        # zero output projection: training starts as a plain GPT and the social block grows in
        nn.init.zeros_(self.social.out_proj.weight)
        if self.social.handoff_proj is not None:
            nn.init.zeros_(self.social.handoff_proj.weight)

    # -- history streams -> handed-over states -------------------------------------------
    def history_states(self, own, own_seg, other, other_seg, own_member=None, other_member=None):
        """own/other (B, H) token ids; *_seg (B, H) message index per token, -1 on padding;
        *_member (B, H) 0/1: the token's author is the stream's person (U for own, V for other; ssm_member).

        Each history message runs through the lower k blocks (attention within the message
        only), then the social block scans the whole stream. Returns states (2, B, h, P, N).
        """
        Bsz, H = own.size(0), max(own.size(1), other.size(1))
        widen = lambda t, fill: F.pad(t, (0, H - t.size(1)), value=fill)  # noqa: E731  (padding: seg -1)
        tokens = torch.cat([widen(own, 0), widen(other, 0)])             # (2B, H): one doubled batch
        seg = torch.cat([widen(own_seg, -1), widen(other_seg, -1)])
        cos, sin = rotary(H, self.cfg.n_embd // self.cfg.n_head, self.cfg.rope_base, tokens.device)
        causal = torch.tril(torch.ones(H, H, dtype=torch.bool, device=tokens.device))
        # same message and not in the future; the diagonal always, so padding rows are not empty
        mask = ((seg[:, :, None] == seg[:, None, :]) & causal) | torch.eye(H, dtype=torch.bool, device=tokens.device)
        x = e = self.wte(tokens)                                          # (2B, H, C)
        for block in self.blocks[: self.cfg.k]:
            x = block(x, cos, sin, mask[:, None])
        u = self.social.inputs(self.blocks[self.cfg.k].ln_1(x), e)       # what the social block sees at layer k
        member = None if own_member is None else torch.cat([widen(own_member, 0), widen(other_member, 0)])
        states = self.social.final_state(u, (seg >= 0).float(), member)  # (2B, h, P, N)
        return states.unflatten(0, (2, Bsz))

    # -- conversation window -> logits ----------------------------------------------------
    def window(self, idx, roles, states, targets=None, keep=None):
        """idx (B, T) token ids; roles (B, T) author role per token (-1 padding);
        states (2, B, h, P, N); targets (B, T) next token or -1; keep (2, B) optional 0/1 per role.

        Returns logits (B, T, V) and, with targets, the per-token nll (B, T) (0 where target -1).
        """
        Bsz, T = idx.shape
        if self.training and self.cfg.forget_p > 0:  # forgetting regulariser, per example and role
            drop = torch.rand(2, Bsz, device=idx.device) < self.cfg.forget_p
            keep = (~drop).float() if keep is None else keep * (~drop)
        if keep is not None:
            states = states * keep[:, :, None, None, None].to(states.dtype)
        steps = torch.stack([roles == ROLE_SELF, roles == ROLE_OTHER])   # (2, B, T): membership
        cos, sin = rotary(T, self.cfg.n_embd // self.cfg.n_head, self.cfg.rope_base, idx.device)
        x = e = self.wte(idx)                                             # (B, T, C)
        for i, block in enumerate(self.blocks):
            social = self.social(self.social.inputs(block.ln_1(x), e), states, steps) if i == self.cfg.k else None
            x = block(x, cos, sin, parallel=social)
        logits = self.lm_head(self.ln_f(x))                               # (B, T, V)
        if targets is None:
            return logits, None
        nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="none")
        return logits, nll.view(Bsz, T)

    def forward(self, batch: dict, keep=None):
        """A collated batch (see trainer.data.collate) -> per-token nll (B, T)."""
        states = self.history_states(batch["own"], batch["own_seg"], batch["other"], batch["other_seg"],
                                     batch.get("own_member"), batch.get("other_member"))
        return self.window(batch["idx"], batch["roles"], states, batch["targets"], keep)[1]

    # -- bookkeeping ------------------------------------------------------------------------
    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay on matrices only. Norm weights and the SSM's dt_bias, A_log, D and context_gain
        are vectors, so they (deliberately) never decay."""
        params = {id(p): p for p in self.parameters()}.values()         # the tied matrix once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def n_params(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    def flops(self, window_tokens: int, T: int, history_tokens: int, H: int) -> float:
        """Training FLOPs (forward + backward) for one batch, nanoGPT style: 6 per parameter per
        token plus attention. History tokens are counted through the lower k blocks and the
        social block's input projection; the scan itself is small and not counted."""
        c = self.cfg
        per_block = sum(p.numel() for p in self.blocks[0].parameters())
        social_in = self.social.in_proj.weight.numel()
        social_out = self.social.out_proj.weight.numel()
        if self.social.handoff_proj is not None:
            social_out += self.social.handoff_proj.weight.numel()
        window = 6 * (c.n_layer * per_block + 2 * (social_in + social_out) + self.wte.weight.numel()) \
            + 12 * c.n_layer * c.n_embd * T
        history = 6 * (c.k * per_block + social_in) + 12 * c.k * c.n_embd * H
        return window * window_tokens + history * history_tokens
