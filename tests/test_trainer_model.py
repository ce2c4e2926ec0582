"""SociaLLM's structure: the social block is symmetric in (own, other), starts as a plain GPT,
and learns through the history streams."""

import dataclasses

import torch

from schemas.shards import ROLE_OTHER, ROLE_SELF, ROLE_THIRD
from trainer.config import PRESETS
from trainer.model import SociaLLM

CFG = dataclasses.replace(PRESETS["tiny"].model, vocab_size=97)


def batch(B=3, T=20, H=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    roles = torch.randint(0, 3, (B, T), generator=g)
    seg = torch.arange(H).div(5, rounding_mode="floor").expand(B, H).clone()
    seg[0, 10:] = -1                                                   # padding
    return {"idx": torch.randint(1, 97, (B, T), generator=g), "roles": roles,
            "targets": torch.randint(1, 97, (B, T), generator=g),
            "own": torch.randint(1, 97, (B, H), generator=g), "own_seg": seg,
            "other": torch.randint(1, 97, (B, H), generator=g), "other_seg": seg.clone()}


def model_with_live_social_block(seed=0):
    torch.manual_seed(seed)
    m = SociaLLM(CFG).double().eval()
    torch.nn.init.normal_(m.social.out_proj.weight, std=0.5)          # the zero init would hide everything
    return m


def test_swapping_own_and_other_streams_with_swapped_roles_gives_the_same_output():
    m, b = model_with_live_social_block(), batch()
    states = m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"])
    swapped_roles = b["roles"].clone()
    swapped_roles[b["roles"] == ROLE_SELF], swapped_roles[b["roles"] == ROLE_OTHER] = ROLE_OTHER, ROLE_SELF
    logits, _ = m.window(b["idx"], b["roles"], states)
    logits_sw, _ = m.window(b["idx"], swapped_roles, states.flip(0))
    torch.testing.assert_close(logits_sw, logits, rtol=1e-12, atol=1e-12)
    # and the histories matter: other states give other logits
    logits_none, _ = m.window(b["idx"], b["roles"], torch.zeros_like(states))
    assert (logits - logits_none).abs().max() > 1e-3


def test_history_streams_are_symmetric_too():
    m, b = model_with_live_social_block(), batch()
    s = m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"])
    s_sw = m.history_states(b["other"], b["other_seg"], b["own"], b["own_seg"])
    torch.testing.assert_close(s_sw, s.flip(0), rtol=1e-12, atol=1e-12)


def test_interlocutor_scan_skips_tokens_of_others():
    """Membership: a third party's token does not enter either role's state (zero step), so
    every later position reads exactly the states it would read without that token's input."""
    m, b = model_with_live_social_block(), batch(B=1, T=12)
    u = torch.randn(1, 12, CFG.n_embd, dtype=torch.float64)
    states = torch.randn(2, 1, m.social.h, m.social.P, m.social.N, dtype=torch.float64)
    roles = torch.full((1, 12), ROLE_THIRD)
    roles[0, [2, 5, 9]] = ROLE_OTHER
    steps = torch.stack([roles == ROLE_SELF, roles == ROLE_OTHER])
    out = m.social(u, states, steps)
    u2 = u.clone()
    u2[0, 6] += 1.0                                                    # a third-party token, after position 5
    out2 = m.social(u2, states, steps)
    # positions after 6 read the same states (position 6 itself differs only through its own readout)
    torch.testing.assert_close(out2[0, 7:], out[0, 7:], rtol=1e-12, atol=1e-12)


def test_training_starts_as_a_plain_gpt_and_the_social_block_learns_after_two_steps():
    torch.manual_seed(0)
    m = SociaLLM(CFG)
    b = batch()
    before = m.social.in_proj.weight.detach().clone()
    logits, _ = m.window(b["idx"], b["roles"], torch.randn(2, 3, m.social.h, m.social.P, m.social.N))
    logits0, _ = m.window(b["idx"], b["roles"], torch.zeros(2, 3, m.social.h, m.social.P, m.social.N))
    torch.testing.assert_close(logits, logits0)                       # zero output projection
    opt = torch.optim.AdamW(m.param_groups(0.1), lr=1e-2)
    for _ in range(2):
        m(b).sum().backward()
        opt.step()
        opt.zero_grad()
    assert m.social.out_proj.weight.abs().max() > 0
    assert not torch.equal(m.social.in_proj.weight, before)


def test_ssm_decay_skip_and_dt_bias_are_not_weight_decayed():
    m = SociaLLM(CFG)
    groups = m.param_groups(0.1)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0.0
    for p in (m.social.A_log, m.social.D, m.social.dt_bias, m.ln_f.weight):
        assert id(p) in no_decay
    dt = torch.nn.functional.softplus(m.social.dt_bias)
    assert dt.min() >= 1e-3 - 1e-9 and dt.max() <= 0.1 + 1e-9
