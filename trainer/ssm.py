"""The selective scan of the social block (Mamba-2 style: one scalar decay per head).

For each head, with a state ``S`` of shape (P, N) and per token ``t``::

    S_t = exp(dt_t * A) * S_{t-1} + dt_t * x_t B_t^T        (A < 0: a decay in (0, 1])
    y_t = S_t C_t

``dt_t = 0`` is an exact skip: the state passes through unchanged and the token adds nothing,
but ``y_t`` still reads the state out. That is how the interlocutor-side scan steps only on the
interlocutor's tokens, and how padding is ignored.

Two implementations of the same function:
* :func:`scan_reference`: the recurrence above, one token at a time (slow, obviously right);
* :func:`scan_chunked`: the matmul form ("state space duality"): quadratic attention-like
  products inside chunks of ``chunk`` tokens, the recurrence only between chunks. Plain
  PyTorch, so it runs anywhere; the tests hold it to the reference in fp64.

Both accept an initial state and return the final one, so scanning A and then B from A's
final state equals scanning A+B (the history -> conversation hand-off).

Shapes: x (b, l, h, p), dt (b, l, h), A (h,), B and C (b, l, n), state (b, h, p, n).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scan_reference(x, dt, A, B, C, state=None):
    """The recurrence, token by token. Returns (y (b, l, h, p), final state (b, h, p, n))."""
    b, l, h, p = x.shape
    n = B.shape[-1]
    S = x.new_zeros(b, h, p, n) if state is None else state
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * A)                                    # (b, h)
        inp = (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, None, None, :]  # (b, h, p, n)
        S = decay[..., None, None] * S + inp
        ys.append(torch.einsum("bhpn,bn->bhp", S, C[:, t]))
    return torch.stack(ys, dim=1), S


def _segsum(a):
    """(..., T) -> (..., T, T) with out[i, j] = a[j+1] + ... + a[i] for j <= i, -inf above.

    Summing the masked terms (not differencing a cumulative sum) keeps it exact in low precision.
    """
    T = a.size(-1)
    x = a[..., None].expand(*a.shape, T)                                   # x[..., i, j] = a[i]
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    x = x.masked_fill(~strict, 0).cumsum(dim=-2)
    lower = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return x.masked_fill(~lower, float("-inf"))


def scan_chunked(x, dt, A, B, C, state=None, chunk: int = 64, need_y: bool = True):
    """The same function as :func:`scan_reference`, in chunked matmul form.

    ``need_y=False`` skips the outputs (the history streams only need the final state).
    Returns (y or None, final state).
    """
    b, l, h, p = x.shape
    n = B.shape[-1]
    pad = (-l) % chunk
    if pad:  # padded tokens get dt = 0: exact skips, so the final state is unchanged
        x, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    c = (l + pad) // chunk
    xd = (x * dt[..., None]).view(b, c, chunk, h, p)                       # input scaled by dt
    a = (dt * A).view(b, c, chunk, h).permute(0, 3, 1, 2)                  # (b, h, c, chunk) log-decays
    Bc, Cc = B.view(b, c, chunk, n), C.view(b, c, chunk, n)
    a_cum = a.cumsum(dim=-1)                                               # (b, h, c, chunk)

    # 1. each chunk's own state, starting from zero: sum_s exp(a_cum[end] - a_cum[s]) x_s B_s^T
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)                      # (b, h, c, chunk)
    chunk_states = torch.einsum("bcln,bhcl,bclhp->bchpn", Bc, decay_to_end, xd)
    # 2. the recurrence between chunks, from the initial state
    S0 = x.new_zeros(b, h, p, n) if state is None else state
    states = torch.cat([S0[:, None], chunk_states], dim=1)                 # (b, c+1, h, p, n)
    decay_chunks = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))       # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunks, states)
    final = states[:, -1]
    if not need_y:
        return None, final
    states = states[:, :-1]                                                # state entering each chunk
    # 3. outputs: within-chunk (an attention-like masked product) + the entering state, decayed
    L = torch.exp(_segsum(a))                                              # (b, h, c, chunk, chunk)
    y_diag = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", Cc, Bc, L, xd)
    y_off = torch.einsum("bcln,bchpn,bhcl->bclhp", Cc, states, torch.exp(a_cum))
    y = (y_diag + y_off).reshape(b, c * chunk, h, p)[:, :l]
    return y, final
