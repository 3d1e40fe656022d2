"""Many trials of a built-in cell with per-trial weights and a hand-written backward pass.

Every trial keeps its own weights (``weight_hh [n, G*H, H]``); a time step is
one batched matrix product over trials and a few elementwise operations on
``[n, batch, H]`` tensors. The input's contribution to every gate is computed
for all steps at once, outside the recurrence, by autograd. Inside it, the
forward pass keeps what the backward pass needs, and the backward pass
computes every step's gate derivatives in a few whole-sequence operations,
so that only the unavoidable dependence on the next step's gradient stays in
the per-step loop (three to five operations per step). That is what makes it
fast on the CPU, where autograd's bookkeeping for the dozen small operations
of a step otherwise costs more than the arithmetic.

All tensors here are time-major: ``[T, n, batch, ...]``. The equations are
those of :mod:`pytest_rnnmemory.cells.builtin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .recurrence import Recurrence


def _shifted(states: torch.Tensor) -> torch.Tensor:
    """``h_(t-1)`` for every step: the states moved one step later, zeros first."""
    return torch.cat([torch.zeros_like(states[:1]), states[:-1]])


def _recurrent_weight_grad(d_gates: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """``sum_t d_gates_t^T h_(t-1)`` per trial: ``[T, n, b, G*H] x [T, n, b, H] -> [n, G*H, H]``."""
    t, n, b, rows = d_gates.shape
    left = d_gates.permute(1, 3, 0, 2).reshape(n, rows, t * b)
    right = h_prev.permute(1, 0, 2, 3).reshape(n, t * b, h_prev.shape[-1])
    return torch.bmm(left, right)


class _Elman(torch.autograd.Function):
    """``h_t = tanh(pre_t + h_(t-1) W_hh^T)``; ``pre`` holds the input part and both biases."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
        w_t = weight_hh.transpose(1, 2)
        states = torch.empty_like(pre)
        h = torch.zeros_like(pre[0])
        for pre_t, state in zip(pre.unbind(0), states.unbind(0), strict=True):
            torch.baddbmm(pre_t, h, w_t, out=state)
            h = state.tanh_()
        ctx.save_for_backward(states, weight_hh)
        return states

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        states, weight_hh = ctx.saved_tensors
        slope = 1.0 - states * states
        d_pre = torch.empty_like(states)
        carry = torch.zeros_like(states[0])
        steps = zip(grad_states.unbind(0), slope.unbind(0), d_pre.unbind(0), strict=True)
        for grad_t, slope_t, d_t in reversed(list(steps)):
            torch.add(grad_t, carry, out=d_t)
            d_t.mul_(slope_t)
            carry = torch.bmm(d_t, weight_hh)
        return d_pre, _recurrent_weight_grad(d_pre, _shifted(states))


class _GRU(torch.autograd.Function):
    """torch's GRU; ``pre`` holds the input part and ``bias_ih``, ``bias_hh`` is applied here."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor):
        steps, n, b, rows = pre.shape
        hidden = rows // 3
        w_t = weight_hh.transpose(1, 2)
        bias = bias_hh.unsqueeze(1)
        states = pre.new_empty(steps, n, b, hidden)
        gates = pre.new_empty(steps, n, b, 3, hidden)  # r, z, n after their nonlinearities
        hidden_new = pre.new_empty(steps, n, b, hidden)  # W_hn h + b_hn, needed by the backward
        h = pre.new_zeros(n, b, hidden)
        for p, act, gh_n, state in zip(
            pre.view(steps, n, b, 3, hidden).unbind(0),
            gates.unbind(0),
            hidden_new.unbind(0),
            states.unbind(0),
            strict=True,
        ):
            gh = torch.baddbmm(bias, h, w_t).view(n, b, 3, hidden)
            rz = act[:, :, :2]
            torch.add(p[:, :, :2], gh[:, :, :2], out=rz).sigmoid_()
            gh_n.copy_(gh[:, :, 2])
            new = act[:, :, 2]
            torch.addcmul(p[:, :, 2], act[:, :, 0], gh_n, out=new).tanh_()
            # h_t = n + z * (h_(t-1) - n)
            h = torch.addcmul(new, act[:, :, 1], h - new, out=state)
        ctx.save_for_backward(states, gates, hidden_new, weight_hh)
        return states

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        states, gates, hidden_new, weight_hh = ctx.saved_tensors
        steps, n, b, hidden = states.shape
        r, z, new = gates[..., 0, :], gates[..., 1, :], gates[..., 2, :]
        h_prev = _shifted(states)
        # Every gate's derivative is d(loss)/d(h_t) times a factor known from the forward pass.
        d_new_pre = (1.0 - z) * (1.0 - new * new)
        factors = torch.stack(
            [
                d_new_pre * hidden_new * r * (1.0 - r),  # reset gate pre-activation
                (h_prev - new) * z * (1.0 - z),  # update gate pre-activation
                d_new_pre * r,  # W_hn h + b_hn
            ],
            dim=3,
        )
        d_gh = torch.empty_like(factors)
        d_h = torch.empty_like(states)
        carry = torch.zeros_like(states[0])
        per_step = zip(
            grad_states.unbind(0), factors.unbind(0), z.unbind(0), d_h.unbind(0), d_gh.unbind(0), strict=True
        )
        for grad_t, factor_t, z_t, d_h_t, d_gh_t in reversed(list(per_step)):
            torch.add(grad_t, carry, out=d_h_t)
            torch.mul(factor_t, d_h_t.unsqueeze(2), out=d_gh_t)
            carry = torch.baddbmm(z_t * d_h_t, d_gh_t.view(n, b, 3 * hidden), weight_hh)
        d_pre = d_gh.clone()
        d_pre[..., 2, :] = d_h * d_new_pre
        d_gh = d_gh.view(steps, n, b, 3 * hidden)
        return (
            d_pre.view(steps, n, b, 3 * hidden),
            _recurrent_weight_grad(d_gh, h_prev),
            d_gh.sum(dim=(0, 2)),
        )


class _LSTM(torch.autograd.Function):
    """torch's LSTM; ``pre`` holds the input part and both biases."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
        steps, n, b, rows = pre.shape
        hidden = rows // 4
        w_t = weight_hh.transpose(1, 2)
        states = pre.new_empty(steps, n, b, hidden)
        cells = pre.new_empty(steps, n, b, hidden)
        gates = pre.new_empty(steps, n, b, 4, hidden)  # i, f, g, o after their nonlinearities
        h = pre.new_zeros(n, b, hidden)
        c = pre.new_zeros(n, b, hidden)
        for pre_t, act, cell, state in zip(
            pre.unbind(0), gates.unbind(0), cells.unbind(0), states.unbind(0), strict=True
        ):
            raw = torch.baddbmm(pre_t, h, w_t).view(n, b, 4, hidden)
            torch.sigmoid(raw, out=act)
            torch.tanh(raw[:, :, 2], out=act[:, :, 2])  # g is a tanh gate, not a sigmoid one
            c = torch.addcmul(act[:, :, 1] * c, act[:, :, 0], act[:, :, 2], out=cell)
            h = torch.mul(act[:, :, 3], c.tanh(), out=state)
        ctx.save_for_backward(states, cells, gates, weight_hh)
        return states

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        states, cells, gates, weight_hh = ctx.saved_tensors
        steps, n, b, hidden = states.shape
        i, f, g, o = (gates[..., k, :] for k in range(4))
        c_prev = _shifted(cells)
        tanh_c = cells.tanh()
        to_cell = o * (1.0 - tanh_c * tanh_c)  # d c_t / d h_t through h_t = o tanh(c_t)
        # Gate derivatives are d(loss)/d(c_t) (i, f, g) or d(loss)/d(h_t) (o) times these factors.
        cell_factors = torch.stack([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g)], dim=3)
        out_factor = tanh_c * o * (1.0 - o)
        d_gates = torch.empty_like(gates)
        carry_h = torch.zeros_like(states[0])
        carry_c = torch.zeros_like(states[0])
        per_step = zip(
            grad_states.unbind(0),
            to_cell.unbind(0),
            cell_factors.unbind(0),
            out_factor.unbind(0),
            f.unbind(0),
            d_gates.unbind(0),
            strict=True,
        )
        for grad_t, to_cell_t, cell_factor_t, out_factor_t, f_t, d_t in reversed(list(per_step)):
            d_h = grad_t + carry_h
            d_c = torch.addcmul(carry_c, d_h, to_cell_t)
            torch.mul(cell_factor_t, d_c.unsqueeze(2), out=d_t[:, :, :3])
            torch.mul(out_factor_t, d_h, out=d_t[:, :, 3])
            carry_h = torch.bmm(d_t.view(n, b, 4 * hidden), weight_hh)
            carry_c = d_c * f_t
        d_gates = d_gates.view(steps, n, b, 4 * hidden)
        return d_gates, _recurrent_weight_grad(d_gates, _shifted(states))


class _LSTM1997(torch.autograd.Function):
    """The 1997 LSTM (no forget gate); ``pre`` holds the input part and both biases."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
        steps, n, b, rows = pre.shape
        hidden = rows // 3
        w_t = weight_hh.transpose(1, 2)
        states = pre.new_empty(steps, n, b, hidden)
        squashed = pre.new_empty(steps, n, b, hidden)  # sigmoid(c_t)
        gates = pre.new_empty(steps, n, b, 3, hidden)  # i, g, o after their nonlinearities
        h = pre.new_zeros(n, b, hidden)
        c = pre.new_zeros(n, b, hidden)
        for pre_t, act, s, state in zip(
            pre.unbind(0), gates.unbind(0), squashed.unbind(0), states.unbind(0), strict=True
        ):
            raw = torch.baddbmm(pre_t, h, w_t).view(n, b, 3, hidden)
            torch.sigmoid(raw, out=act)
            act[:, :, 1].mul_(4.0).sub_(2.0)  # g = 4 sigmoid - 2
            c = torch.addcmul(c, act[:, :, 0], act[:, :, 1])
            torch.sigmoid(c, out=s)
            h = torch.mul(act[:, :, 2], 2.0 * s - 1.0, out=state)
        ctx.save_for_backward(states, squashed, gates, weight_hh)
        return states

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        states, squashed, gates, weight_hh = ctx.saved_tensors
        steps, n, b, hidden = states.shape
        i, g, o = (gates[..., k, :] for k in range(3))
        to_cell = o * 2.0 * squashed * (1.0 - squashed)  # d h_t / d c_t
        # The input and cell-input gates' derivatives are d(loss)/d(c_t) times these factors;
        # 4 sigmoid' = (2 + g)(2 - g) / 4 for g = 4 sigmoid - 2.
        cell_factors = torch.stack([g * i * (1.0 - i), i * (4.0 - g * g) * 0.25], dim=3)
        out_factor = (2.0 * squashed - 1.0) * o * (1.0 - o)
        d_gates = torch.empty_like(gates)
        carry_h = torch.zeros_like(states[0])
        carry_c = torch.zeros_like(states[0])
        per_step = zip(
            grad_states.unbind(0),
            to_cell.unbind(0),
            cell_factors.unbind(0),
            out_factor.unbind(0),
            d_gates.unbind(0),
            strict=True,
        )
        for grad_t, to_cell_t, cell_factor_t, out_factor_t, d_t in reversed(list(per_step)):
            d_h = grad_t + carry_h
            carry_c = torch.addcmul(carry_c, d_h, to_cell_t)  # the cell state carries over whole
            torch.mul(cell_factor_t, carry_c.unsqueeze(2), out=d_t[:, :, :2])
            torch.mul(out_factor_t, d_h, out=d_t[:, :, 2])
            carry_h = torch.bmm(d_t.view(n, b, 3 * hidden), weight_hh)
        d_gates = d_gates.view(steps, n, b, 3 * hidden)
        return d_gates, _recurrent_weight_grad(d_gates, _shifted(states))


def elman(pre: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None) -> torch.Tensor:
    """The Elman recurrence; both biases are in ``pre``."""
    return _Elman.apply(pre, weight_hh)


def lstm(pre: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None) -> torch.Tensor:
    """The LSTM recurrence; both biases are in ``pre``."""
    return _LSTM.apply(pre, weight_hh)


def lstm1997(pre: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None) -> torch.Tensor:
    """The 1997 LSTM's recurrence; both biases are in ``pre``."""
    return _LSTM1997.apply(pre, weight_hh)


def gru(pre: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None) -> torch.Tensor:
    """The GRU recurrence; ``bias_hh`` acts inside it."""
    return _GRU.apply(pre, weight_hh, bias_hh)


def stepwise_forward(params: dict[str, torch.Tensor], x: torch.Tensor, cell: Recurrence) -> torch.Tensor:
    """Hidden states ``[n, b, T, H]`` of ``n`` trials of a built-in cell for inputs ``x [n, b, T, I]``."""
    n, b, steps, inputs = x.shape
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    rows = w_ih.shape[1]
    bias = params["bias_ih"] if cell.bias_hh_inside else params["bias_ih"] + params["bias_hh"]
    # The input part of every gate at every step, in one product, laid out time-major.
    if inputs == 1:
        # One input unit: the product is an outer product, cheapest as a broadcast.
        x_tm = x.permute(2, 0, 1, 3).reshape(steps, n, b)
        pre = x_tm.view(steps, n, b, 1) * w_ih.view(1, n, 1, rows) + bias.view(1, n, 1, rows)
    else:
        pre = torch.baddbmm(bias.unsqueeze(1), x.reshape(n, b * steps, inputs), w_ih.transpose(1, 2))
        pre = pre.view(n, b, steps, rows).permute(2, 0, 1, 3)
    states = cell.stepwise(pre.contiguous(), w_hh, params["bias_hh"] if cell.bias_hh_inside else None)
    return states.permute(1, 2, 0, 3)
