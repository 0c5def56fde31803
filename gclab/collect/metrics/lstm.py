"""The LSTM and RNN rules (docs/METRICS.md, "Per-layer rules"): one-layer, unidirectional ``nn.LSTM``
and ``nn.RNN`` (tanh or ReLU; an RNN is the same form with one gate).

Its weights are used at every time step: the gate pre-activations are
g_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, so an example's gradient is
∂/∂[W_ih | W_hh] = Σ_t δ_t [x_t ; h_{t-1}]ᵀ and ∂/∂b_ih = ∂/∂b_hh = Σ_t δ_t, with δ_t the total
cotangent of g_t (through every later step). That is a Linear layer over T positions with input
[x_t ; h_{t-1}] (the sequence form of ``LinearRule``: direct or ghost by FLOP count), as Opacus's
DPLSTM and BackPACK compute it. The pass gets δ_t by ``replay``: the autograd path recomputes the
module's output step by step with a zero probe added to every g_t, and differentiates the probe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gclab.collect.metrics.rules import Rule, seq_per_example, seq_sq_norms, sq

WEIGHTS, BIASES = ("weight_ih_l0", "weight_hh_l0"), ("bias_ih_l0", "bias_hh_l0")


@dataclass(frozen=True)
class LSTMContext:
    """The per-position inputs of the trainable weights, A (b, g=1, p, T): rows x_t (if W_ih is
    trainable) then h_{t-1} (if W_hh is), and their split point in p."""

    A: Tensor
    n_ih: int


class LSTMRule(Rule):
    """``h`` is the replay's [x ; h_prev] (b, T, d + H); ``delta`` the gate cotangents (m, b, T, G·H),
    G = 4 gates (i, f, g, o)."""

    param_names = (*WEIGHTS, *BIASES)
    replays = True
    n_gates = 4

    def __init__(self, module: nn.Module):
        super().__init__(module)
        assert isinstance(module, nn.RNNBase)  # registered for nn.LSTM and nn.RNN only
        self.rnn = module
        # Other shapes (layers, directions, projections) carry parameters this rule does not know: the plan
        # sends them to the fallback. Dropout acts between layers only, so one layer has none.
        self.d = module.input_size

    def _start(self, inp: tuple, b: int, like: Tensor):
        """The state before the first step: (h0, c0) given or zeros, each (b, H)."""
        if len(inp) > 1 and inp[1] is not None:
            return inp[1][0][0], inp[1][1][0]
        zero = like.new_zeros(b, self.rnn.hidden_size)
        return zero, zero

    def _step(self, g: Tensor, state):
        """One step from the gate pre-activations g (b, G·H): (h_t, the new state)."""
        i, f, gg, o = g.chunk(4, 1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def _last(self, state):
        """The module's second output from the final state."""
        return state[0][None], state[1][None]

    def replay(self, inp: tuple, out, kwargs: dict | None = None) -> tuple[object, Tensor, Tensor] | None:
        """(the module's output recomputed differentiably, the zero probe on the gates (b, T, G·H), the
        input [x ; h_prev] (b, T, d + H)), or None for an input it cannot replay (packed, unbatched)."""
        x = inp[0] if inp else None
        if kwargs or not isinstance(x, Tensor) or x.dim() != 3:
            return None
        rnn = self.rnn
        xs = x if rnn.batch_first else x.transpose(0, 1)  # (b, T, d)
        b, T, _ = xs.shape
        state = self._start(inp, b, xs)
        probe = xs.new_zeros(b, T, self.n_gates * rnn.hidden_size, requires_grad=True)
        gx = xs @ rnn.weight_ih_l0.T + probe  # the input part of every step in one product
        if rnn.bias:
            gx = gx + (rnn.bias_ih_l0 + rnn.bias_hh_l0)
        hs, prev = [], []
        for t in range(T):
            prev.append(state[0])
            h, state = self._step(gx[:, t] + state[0] @ rnn.weight_hh_l0.T, state)
            hs.append(h)
        seq = torch.stack(hs, 1)
        y = seq if rnn.batch_first else seq.transpose(0, 1)
        h_in = torch.cat([xs.detach(), torch.stack(prev, 1).detach()], 2)
        return (y, self._last(state)), probe, h_in

    def prepare(self, h: Tensor) -> LSTMContext:
        parts = []
        if WEIGHTS[0] in self.trainable:
            parts.append(h[..., : self.d])
        if WEIGHTS[1] in self.trainable:
            parts.append(h[..., self.d :])
        A = torch.cat(parts, 2) if parts else h[..., :0]
        n_ih = self.d if WEIGHTS[0] in self.trainable else 0
        return LSTMContext(A.transpose(1, 2).unsqueeze(1), n_ih)

    def _n_biases(self) -> int:
        return sum(n in self.trainable for n in BIASES)

    def _gates(self, delta: Tensor) -> Tensor:
        return delta.transpose(2, 3).unsqueeze(2)  # (m, b, g=1, 4H, T)

    def _weight_only(self, ctx: LSTMContext) -> dict:
        return {"weight": True} if ctx.A.shape[2] else {}

    def sq_norms(self, ctx, delta):
        G = self._gates(delta)
        S = seq_sq_norms(ctx.A, G, self._weight_only(ctx))
        nb = self._n_biases()
        return S + nb * sq(delta.sum(2), -1) if nb else S

    def grads(self, ctx, delta):
        out = {}
        if ctx.A.shape[2]:
            W = torch.einsum("btq,bpt->qp", delta, ctx.A[:, 0])
            if WEIGHTS[0] in self.trainable:
                out[WEIGHTS[0]] = W[:, : ctx.n_ih]
            if WEIGHTS[1] in self.trainable:
                out[WEIGHTS[1]] = W[:, ctx.n_ih :]
        bias = delta.sum((0, 1))
        out.update({n: bias for n in BIASES if n in self.trainable})
        return out

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        parts = []
        if ctx.A.shape[2]:
            J = seq_per_example(ctx.A, self._gates(delta), {"weight": True})[0]
            J = J.reshape(m, b, delta.shape[-1], -1)  # (m, b, 4H, p): the parameter layout
            if WEIGHTS[0] in self.trainable:
                parts.append(J[..., : ctx.n_ih].reshape(m, b, -1))
            if WEIGHTS[1] in self.trainable:
                parts.append(J[..., ctx.n_ih :].reshape(m, b, -1))
        bias = delta.sum(2)
        parts += [bias for n in BIASES if n in self.trainable]
        return torch.cat(parts, -1) if parts else delta.new_zeros(m, b, 0)


class RNNRule(LSTMRule):
    """``nn.RNN``: h_t = act(g_t), one gate; ``delta`` (m, b, T, H)."""

    n_gates = 1

    def _start(self, inp: tuple, b: int, like: Tensor):
        if len(inp) > 1 and inp[1] is not None:
            return (inp[1][0],)
        return (like.new_zeros(b, self.rnn.hidden_size),)

    def _step(self, g: Tensor, state):
        h = torch.tanh(g) if self.rnn.nonlinearity == "tanh" else torch.relu(g)
        return h, (h,)

    def _last(self, state):
        return state[0][None]
