"""The native kernel's cumulative log-sum-exp: torch's values and gradients, wherever the engine sends it."""

import pytest
import torch

from pytest_rnnmemory.cells import scan
from pytest_rnnmemory.cells.native import native_available, unavailable_reason
from pytest_rnnmemory.cells.scan import fast_scans

pytestmark = pytest.mark.skipif(
    not native_available(), reason=f"the native kernel is unavailable here: {unavailable_reason()}"
)

# the scanned length, and the lanes around it: one, a few, a partial block of the kernel's
# buffer (more outer indices than one block holds), and an inner dimension wide enough to scan
# in place
SHAPES = [
    ((7,), 0),
    ((3, 5, 4), -1),
    ((3, 5, 4), 0),
    ((300, 9, 1), 1),
    ((40, 6, 8), 1),
    ((2, 5, 300), 1),
    ((2, 3, 4, 5), -2),
]


def _through_both(x: torch.Tensor, dim: int, grad: torch.Tensor):
    x = x.detach().requires_grad_()
    theirs = torch.logcumsumexp(x, dim)
    (their_grad,) = torch.autograd.grad(theirs, x, grad)
    with fast_scans():
        ours = torch.logcumsumexp(x, dim)
    (our_grad,) = torch.autograd.grad(ours, x, grad)
    return ours, theirs, our_grad, their_grad


@pytest.mark.parametrize(("shape", "dim"), SHAPES)
def test_the_scan_gives_torchs_values_and_gradients(shape, dim):
    g = torch.Generator().manual_seed(0)
    x, grad = torch.randn(shape, generator=g) * 4, torch.randn(shape, generator=g)
    ours, theirs, our_grad, their_grad = _through_both(x, dim, grad)
    assert isinstance(ours.grad_fn, scan.LogCumSumExp._backward_cls)
    torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-5, atol=1e-5)


def test_the_scan_keeps_torchs_infinities_and_nans():
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([-inf, -inf, 0.0, -inf, 2.0, inf, 1.0, nan, 3.0])
    with fast_scans():
        ours = torch.logcumsumexp(x, 0)
    torch.testing.assert_close(ours, torch.logcumsumexp(x, 0), equal_nan=True)
    # A -inf term takes no share of a later sum: its gradient there is 0. Where every term
    # so far is -inf, y_0 = x_0 and the gradient is the one arriving (torch's is NaN there).
    x, grad = torch.tensor([-inf, 0.5, -inf, -1.0, 2.0]), torch.tensor([1.5, -2.0, 0.5, 3.0, 1.0])
    ours, theirs, our_grad, their_grad = _through_both(x, 0, grad)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(our_grad[1:], their_grad[1:])
    assert our_grad[0] == 1.5 and our_grad[2] == 0


def test_every_value_shares_its_gradient_among_its_terms_in_full_even_where_infinities_tie():
    """d y_s / d x_t over t <= s sums to 1 for every s (the terms' softmax weights), so the
    gradient sums to the gradient arriving; where two infinities tie, torch's is NaN."""
    inf = float("inf")
    for x in ([-inf, -inf, 0.5, -1.0], [1.0, inf, inf, 2.0], [0.3, -0.7, 2.0, 1.9]):
        x = torch.tensor(x, requires_grad=True)
        grad = torch.tensor([1.5, -2.0, 0.5, 3.0])
        with fast_scans():
            y = torch.logcumsumexp(x, 0)
        (ours,) = torch.autograd.grad(y, x, grad)
        assert ours.isfinite().all(), x
        torch.testing.assert_close(ours.sum(), grad.sum(), msg=str(x))


def test_the_scan_is_batched_and_differentiated_by_torch_func():
    """Under vmap and grad, as the engine runs a user's cell: with the trials' dimension where
    vmap puts it and a dimension counted from the end."""
    g = torch.Generator().manual_seed(1)
    w, xs = torch.randn(4, 1, 3, generator=g), torch.randn(6, 4, 9, 3, generator=g)

    def loss(w):
        one = lambda w, x: torch.logcumsumexp(x * w, dim=-2).sum(-2)  # noqa: E731
        return torch.func.vmap(one, in_dims=(None, 0))(w, xs).square().sum()

    theirs = torch.func.grad(loss)(w)
    with fast_scans():
        ours = torch.func.grad(loss)(w)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_what_the_kernel_does_not_serve_stays_torchs(monkeypatch):
    """float64, a named ``out=`` and a 0-d tensor go to torch's own scan."""
    called = []
    monkeypatch.setattr(scan.LogCumSumExp, "apply", lambda *a: called.append(a))
    with fast_scans():
        x = torch.randn(5, 3, dtype=torch.float64)
        torch.testing.assert_close(torch.logcumsumexp(x, 0), torch.logcumsumexp(x.clone(), 0))
        out = torch.empty(5, 3)
        torch.logcumsumexp(x.float(), 0, out=out)
        torch.logcumsumexp(torch.tensor(2.0), 0)
        assert called == []
        x.float().logcumsumexp(dim=1)
    assert len(called) == 1


def test_a_sequence_cell_under_vmap_scans_in_the_kernel_as_each_trial_would_in_torch(monkeypatch):
    """The engine's batched MinGRU against each trial run by torch alone, values and gradients."""
    from pytest_rnnmemory.schemes import Vmap
    from tests.cells_for_tests import MinGRU

    torch.manual_seed(0)
    cells = [MinGRU(1, 3) for _ in range(3)]
    params = {
        k: torch.stack([dict(c.named_parameters())[k] for c in cells]).detach()
        for k in ("z.weight", "z.bias", "h.weight", "h.bias")
    }
    params = {k: v.requires_grad_() for k, v in params.items()}
    batch = torch.randn(3, 4, 11, 1)
    calls = []
    apply = scan.LogCumSumExp.apply
    monkeypatch.setattr(scan.LogCumSumExp, "apply", lambda *a: calls.append(1) or apply(*a))
    ours = Vmap(cells[0], {}).hidden(params, batch)
    assert calls, "the batched cell did not scan in the native kernel"
    our_grads = torch.autograd.grad(ours.square().sum(), list(params.values()))
    for i, cell in enumerate(cells):
        theirs = cell(batch[i])
        torch.testing.assert_close(ours[i], theirs, rtol=1e-5, atol=1e-6)
        their_grads = torch.autograd.grad(
            theirs.square().sum(), [dict(cell.named_parameters())[k] for k in params]
        )
        for key, mine, their in zip(params, our_grads, their_grads, strict=True):
            torch.testing.assert_close(mine[i], their, rtol=1e-4, atol=1e-5, msg=key)


def test_the_packages_own_modules_run_without_the_scan_context(monkeypatch):
    """The built-in cells and the time loop around a step cell make many small calls, each of
    which the context would send through Python: they run without it."""
    from pytest_rnnmemory import schemes
    from pytest_rnnmemory.cells import build_cell

    entered = []
    monkeypatch.setattr(schemes, "fast_scans", lambda: entered.append(1) or fast_scans())
    batch = torch.randn(2, 3, 4, 1)
    for name, scans in (
        ("lstm", False),
        ("tests.cells_for_tests:StepGRU", False),
        ("tests.cells_for_tests:MinGRU", True),
    ):
        module = build_cell(name, 1, 2)
        params = {k: torch.stack([v.detach()] * 2) for k, v in module.named_parameters()}
        entered.clear()
        schemes.Vmap(module, {}).hidden(params, batch)
        assert bool(entered) is scans, name


def test_a_long_scan_keeps_its_running_value_exact_and_its_memory_small():
    """Ten million steps of one sequence: the running value is not rounded to float32 at every
    step, and the kernel's working memory is a block's, not 256 sequences' of this length."""
    x = torch.zeros(10_000_000, requires_grad=True)
    with fast_scans():
        y = torch.logcumsumexp(x, 0)
    exact = torch.arange(1, x.numel() + 1, dtype=torch.float64).log()
    torch.testing.assert_close(y.detach().double(), exact, rtol=2e-7, atol=1e-6)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    # d sum_t y_t / d x_s = sum_(t >= s) 1 / (t + 1), the tail of the harmonic series
    tail = (1 / exact.exp()).flip(0).cumsum(0).flip(0)
    torch.testing.assert_close(grad.double(), tail, rtol=1e-5, atol=1e-5)


def test_what_the_scan_does_not_differentiate_raises_instead_of_answering_wrong():
    x = torch.randn(6, dtype=torch.float32, requires_grad=True)
    with fast_scans():
        y = torch.logcumsumexp(x, 0)
    (grad,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="second derivative"):
        torch.autograd.grad(grad.sum(), x)
    with fast_scans(), pytest.raises(NotImplementedError, match="forward-mode"):
        torch.func.jvp(lambda v: torch.logcumsumexp(v, 0), (x.detach(),), (torch.ones(6),))


def test_a_dimension_out_of_range_is_torchs_error():
    with fast_scans(), pytest.raises(IndexError, match="out of range"):
        torch.logcumsumexp(torch.randn(3, 4), 2)
    with pytest.raises(IndexError, match="out of range"):  # the operator itself, called directly
        scan.logcumsumexp(torch.randn(3, 4), -3)
