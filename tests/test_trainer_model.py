"""SociaLLM's structure: the social block is symmetric in (own, other), starts as a plain GPT,
and learns through the history streams."""

import dataclasses

import pytest
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
    torch.nn.init.normal_(m.social.context_gain, std=1.0)             # and so would the zero context gain
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


MEMBER_CFG = dataclasses.replace(CFG, ssm_member=True, ssm_handoff_readout=True)


def members(b, seed=1):
    """0/1 per stream token: whether its message is by the stream's person (own: U, other: V)."""
    g = torch.Generator().manual_seed(seed)
    own = (torch.rand(b["own"].shape, generator=g) < 0.6).double() * (b["own_seg"] >= 0)
    return own, (torch.rand(b["other"].shape, generator=g) < 0.6).double() * (b["other_seg"] >= 0)


def test_with_the_member_input_and_the_handoff_readout_the_block_stays_exactly_symmetric():
    """ssm_member / ssm_handoff_readout (issue #15, fourth attempt): swapping the streams with their
    membership and the window's self/other roles gives the same logits; the membership matters; the
    hand-off readout adds nothing when the handed-over states are zero (the `none` condition)."""
    torch.manual_seed(0)
    m = SociaLLM(MEMBER_CFG).double().eval()
    for p in (m.social.out_proj.weight, m.social.handoff_proj.weight):
        torch.nn.init.normal_(p, std=0.5)
    torch.nn.init.normal_(m.social.context_gain, std=1.0)
    b = batch()
    own_m, other_m = members(b)
    states = m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"], own_m, other_m)
    s_sw = m.history_states(b["other"], b["other_seg"], b["own"], b["own_seg"], other_m, own_m)
    torch.testing.assert_close(s_sw, states.flip(0), rtol=1e-12, atol=1e-12)
    swapped_roles = b["roles"].clone()
    swapped_roles[b["roles"] == ROLE_SELF], swapped_roles[b["roles"] == ROLE_OTHER] = ROLE_OTHER, ROLE_SELF
    logits, _ = m.window(b["idx"], b["roles"], states)
    torch.testing.assert_close(m.window(b["idx"], swapped_roles, s_sw)[0], logits, rtol=1e-12, atol=1e-12)
    # whose tokens they are changes what is written
    flipped = m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"], 1 - own_m, other_m)
    assert (flipped[0] - states[0]).abs().max() > 1e-6 and torch.equal(flipped[1], states[1])
    with pytest.raises(ValueError, match="membership"):
        m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"])
    zero = torch.zeros_like(states)
    before = m.window(b["idx"], b["roles"], zero)[0]
    torch.nn.init.zeros_(m.social.handoff_proj.weight)
    torch.testing.assert_close(m.window(b["idx"], b["roles"], zero)[0], before, rtol=0, atol=0)
    assert (m.window(b["idx"], b["roles"], states)[0] - logits).abs().max() > 1e-6


def test_the_member_input_sees_the_same_token_alike_in_the_stream_and_in_the_window():
    """The hand-off stays one scan with ssm_member: a window scan over tokens that are all the own
    side's members, from a stream's final state, equals the scan of stream and window together."""
    torch.manual_seed(0)
    m = SociaLLM(MEMBER_CFG).double().eval()
    ssm = m.social
    u = torch.randn(1, 30, CFG.n_embd, dtype=torch.float64)
    one = lambda n: torch.ones(1, n, dtype=torch.float64)  # noqa: E731
    s_hist = ssm.final_state(u[:, :18], one(18), one(18))
    s_all = ssm.final_state(u, one(30), one(30))
    _, x, B, C, dt = ssm._project(u[:, 18:], one(12))
    torch.testing.assert_close(ssm._scan(x, dt, B, C, s_hist, need_y=False)[1], s_all, rtol=1e-10, atol=1e-12)


def test_history_streams_are_symmetric_too():
    m, b = model_with_live_social_block(), batch()
    s = m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"])
    s_sw = m.history_states(b["other"], b["other_seg"], b["own"], b["own_seg"])
    torch.testing.assert_close(s_sw, s.flip(0), rtol=1e-12, atol=1e-12)


def test_interlocutor_scan_skips_tokens_of_others():
    """Membership: a third party's token does not enter either role's state (zero step), so
    every later position reads exactly the states it would read without that token's input."""
    m = model_with_live_social_block()
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


def test_the_social_block_reads_the_tokens_first_and_the_lower_blocks_grow_in():
    """ssm_embed: the block's input is norm(token embedding) + context_gain * ln_1(residual stream at k),
    the gain zero at init, so what history tokens write does not depend on the lower blocks until the
    gain has grown (issue #15: the lower blocks' drift kept the block from learning)."""
    torch.manual_seed(0)
    m, b = SociaLLM(CFG).double(), batch()
    assert CFG.k > 0 and torch.equal(m.social.context_gain, torch.zeros_like(m.social.context_gain))
    states = lambda: m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"])  # noqa: E731
    s0 = states()
    with torch.no_grad():
        for p in m.blocks[0].parameters():
            p.add_(torch.randn_like(p))
    torch.testing.assert_close(states(), s0, rtol=0, atol=0)         # the lower blocks do not matter yet
    with torch.no_grad():
        m.social.context_gain.fill_(1.0)
    assert (states() - s0).abs().max() > 1e-6                         # and do once the gain has grown
    off = SociaLLM(dataclasses.replace(CFG, ssm_embed=False))         # the plain input, kept for ablations
    assert off.social.embed_norm is None and off.social.context_gain is None


def test_ssm_decay_skip_and_dt_bias_are_not_weight_decayed():
    m = SociaLLM(CFG)
    groups = m.param_groups(0.1)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0.0
    for p in (m.social.A_log, m.social.D, m.social.dt_bias, m.social.context_gain, m.ln_f.weight):
        assert id(p) in no_decay
    dt = torch.nn.functional.softplus(m.social.dt_bias)
    assert dt.min() >= 1e-3 - 1e-9 and dt.max() <= 0.1 + 1e-9


@pytest.mark.slow
def test_the_social_block_learns_to_recall_a_token_from_the_own_stream():
    """The smallest form of the planted-signal test: the own stream holds one of 8 class tokens three
    times among random tokens; the last window position must emit it. A plain GPT cannot beat ln 8.
    It passes because the social block reads the token embeddings and the residual stream's part
    starts at zero (``ssm_embed``; with ``ssm_embed=False`` it sits at ln 8 for 300 steps, docs/trainer.md)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    cfg = dataclasses.replace(CFG, vocab_size=64, block_size=64, history_size=64)
    m = SociaLLM(cfg)
    opt = torch.optim.AdamW(m.param_groups(0.0), lr=3e-3)

    def batch_of(B, H=48, T=24):
        c = torch.randint(40, 48, (B,), generator=g)
        own = torch.randint(3, 30, (B, H), generator=g)
        for _ in range(3):
            own[torch.arange(B), torch.randint(0, H, (B,), generator=g)] = c
        seg = torch.arange(H).div(12, rounding_mode="floor").expand(B, H).clone()
        idx = torch.randint(3, 30, (B, T), generator=g)
        idx[:, -1] = 1                                                  # "now say it"
        targets = torch.full((B, T), -1)
        targets[:, -1] = c
        return {"idx": idx, "roles": torch.full((B, T), ROLE_SELF), "targets": targets, "own": own, "own_seg": seg,
                "other": torch.randint(3, 30, (B, H), generator=g), "other_seg": seg.clone()}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core CI machine: one thread avoids oversubscription stalls
    for _ in range(300):
        (m(batch_of(16)).sum() / 16).backward()
        opt.step()
        opt.zero_grad()
    m.eval()
    b = batch_of(256)
    with torch.no_grad():
        with_states = m(b).sum() / 256
        without = m(b, keep=torch.zeros(2, 256)).sum() / 256
    torch.set_num_threads(threads)
    assert with_states < without - 0.5 and with_states < 1.5, (float(with_states), float(without))


def test_a_checkpoint_from_before_the_token_embedding_input_loads_as_the_model_it_was():
    """A checkpoint's config written before ``ssm_embed`` existed has no such key: it was trained
    without that input, so it must load (strictly) and compute as that model, not as today's default."""
    from trainer import config as cfgmod

    old_model = dataclasses.replace(CFG, ssm_embed=False)
    torch.manual_seed(0)
    m = SociaLLM(old_model).double().eval()
    saved = cfgmod.to_dict(dataclasses.replace(PRESETS["tiny"], model=old_model))
    for key in cfgmod.MODEL_KEYS_BEFORE:
        del saved["model"][key]                                       # as an older checkpoint wrote it
    back = SociaLLM(cfgmod.from_dict(saved).model).double().eval()
    back.load_state_dict(m.state_dict(), strict=True)
    b = batch()
    states = m.history_states(b["own"], b["own_seg"], b["other"], b["other_seg"])
    assert torch.equal(m.window(b["idx"], b["roles"], states)[0], back.window(b["idx"], b["roles"], states)[0])
    assert cfgmod.from_dict(cfgmod.to_dict(PRESETS["tiny"])).model.ssm_embed  # a new checkpoint keeps its own
