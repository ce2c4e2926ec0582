"""The chunked matmul-form scan is the sequential recurrence (fp64): outputs, states, gradients,
exact skips and the history -> conversation state hand-off."""

import pytest
import torch

from trainer.ssm import scan_chunked, scan_reference

F64 = torch.float64  # every tensor below is fp64: the comparison is about the algorithm, not rounding


def inputs(b=2, l=37, h=3, p=4, n=5, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=g, dtype=F64)
    dt = torch.nn.functional.softplus(torch.randn(b, l, h, generator=g, dtype=F64) - 1)
    A = -torch.rand(h, generator=g, dtype=F64) * 2 - 0.1
    B = torch.randn(b, l, n, generator=g, dtype=F64)
    C = torch.randn(b, l, n, generator=g, dtype=F64)
    S0 = torch.randn(b, h, p, n, generator=g, dtype=F64)
    out = [x, dt, A, B, C, S0]
    return [t.requires_grad_(requires_grad) for t in out]


@pytest.mark.parametrize("chunk", [1, 8, 16, 64])
def test_chunked_scan_equals_sequential_outputs_and_final_state(chunk):
    x, dt, A, B, C, S0 = inputs()
    y_ref, s_ref = scan_reference(x, dt, A, B, C, S0)
    y, s = scan_chunked(x, dt, A, B, C, S0, chunk=chunk)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)
    _, s_only = scan_chunked(x, dt, A, B, C, S0, chunk=chunk, need_y=False)
    torch.testing.assert_close(s_only, s_ref, rtol=1e-10, atol=1e-10)


def test_chunked_scan_gradients_equal_sequential():
    a = inputs(l=21, requires_grad=True)
    b = [t.detach().clone().requires_grad_(True) for t in a]
    w = torch.randn(2, 21, 3, 4, dtype=F64)
    y_ref, s_ref = scan_reference(*a)
    ((y_ref * w).sum() + s_ref.square().sum()).backward()
    y, s = scan_chunked(*b, chunk=8)
    ((y * w).sum() + s.square().sum()).backward()
    for ta, tb in zip(a, b):
        torch.testing.assert_close(tb.grad, ta.grad, rtol=1e-9, atol=1e-9)


def test_zero_step_equals_removing_the_token():
    x, dt, A, B, C, S0 = inputs(b=1, l=30)
    skip = torch.zeros(30, dtype=torch.bool)
    skip[[0, 3, 4, 5, 17, 29]] = True
    y, s = scan_chunked(x, dt.masked_fill(skip[None, :, None], 0.0), A, B, C, S0, chunk=8)
    keep = ~skip
    y_cut, s_cut = scan_reference(x[:, keep], dt[:, keep], A, B[:, keep], C[:, keep], S0)
    torch.testing.assert_close(s, s_cut, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y[:, keep], y_cut, rtol=1e-10, atol=1e-10)
    # a skipped token still reads the state out: it sees the state of the last kept token
    assert not torch.allclose(y[:, 4], torch.zeros_like(y[:, 4]))


def test_state_handoff_equals_one_scan():
    x, dt, A, B, C, S0 = inputs(l=50)
    cut = 23
    _, s_a = scan_chunked(x[:, :cut], dt[:, :cut], A, B[:, :cut], C[:, :cut], S0, chunk=8, need_y=False)
    y_b, s_b = scan_chunked(x[:, cut:], dt[:, cut:], A, B[:, cut:], C[:, cut:], s_a, chunk=8)
    y_ab, s_ab = scan_reference(x, dt, A, B, C, S0)
    torch.testing.assert_close(y_b, y_ab[:, cut:], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s_b, s_ab, rtol=1e-10, atol=1e-10)
