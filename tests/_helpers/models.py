"""The shared catalogue of test models for the metric engine (as BackPACK's settings files): each
entry builds a small float64 model in eval-free form, its inputs and, for token models, the
``gc_input`` module. Used by every engine test file that checks against brute force."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrizations

from tests._helpers.bruteforce import randomize_

B, K = 4, 3  # examples and logits of every catalogue model


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    x_shape: tuple[int, ...]  # per example; with ``vocab`` the token sequence length
    vocab: int | None = None  # integer token inputs in [0, vocab)
    gc_input: str | None = None  # the module whose output GC is taken w.r.t.

    def model(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        net = randomize_(self.make().double(), seed=seed)
        # A case that does not give K finite logits per example is a broken catalogue entry, and an
        # engine test on it would fail (or pass) for the wrong reason: refuse it here.
        with torch.no_grad():
            out = net(self.inputs(b=2, seed=seed))
        assert out.shape == (2, K) and bool(torch.isfinite(out).all()), (self.make, tuple(out.shape))
        return net

    def inputs(self, b: int = B, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed + 100)
        if self.vocab is not None:
            return torch.randint(0, self.vocab, (b, *self.x_shape), generator=g)
        return torch.randn(b, *self.x_shape, generator=g, dtype=torch.float64)


class Transformer(nn.Module):
    """One pre-LN block: LayerNorm, nn.MultiheadAttention, GELU MLP, a positional nn.Parameter."""

    def __init__(self, d_in=3, d=8, T=5, k=K, heads=2):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.pos = nn.Parameter(torch.zeros(T, d))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, k)

    def forward(self, x):
        h = self.inp(x) + self.pos
        a = self.ln1(h)
        h = h + self.att(a, a, a, need_weights=False)[0]
        h = h + self.ff(self.ln2(h))
        return self.head(h.mean(1))


class Attention(nn.Module):
    """nn.MultiheadAttention over (b, T, d) inputs in the ways a model calls it."""

    def __init__(self, d=4, heads=2, k=K, batch_first=True, bias=True, use_weights=False, causal=False, cross=False):
        super().__init__()
        self.att = nn.MultiheadAttention(d, heads, bias=bias, batch_first=batch_first)
        self.key = nn.Linear(d, d) if cross else None
        self.batch_first, self.use_weights, self.causal = batch_first, use_weights, causal
        self.head = nn.Linear(d, k)

    def forward(self, x):
        q = x if self.batch_first else x.transpose(0, 1)
        kv = q if self.key is None else self.key(q)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype) if self.causal else None
        y, w = self.att(q, kv, kv, need_weights=self.use_weights, attn_mask=mask)
        y = y if self.batch_first else y.transpose(0, 1)
        h = torch.tanh(y).mean(1)
        if self.use_weights:
            h = h + w.sum((1, 2))[:, None] * w[:, 0, :1]
        return self.head(h)


class AddedBias(nn.Module):
    """x (b, T, d) -> Linear -> + a bare nn.Parameter of ``shape`` -> tanh -> flatten -> Linear."""

    def __init__(self, shape, d=4, T=3, k=K, twice=False, time_major=False):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.bias = nn.Parameter(torch.zeros(shape))
        self.twice, self.time_major = twice, time_major
        self.head = nn.Linear(T * d, k)

    def forward(self, x):
        h = self.lin(x)
        if self.time_major:
            h = (h.transpose(0, 1) + self.bias).transpose(0, 1)
        else:
            h = h + self.bias
        if self.twice:
            h = torch.tanh(h) + self.bias
        return self.head(torch.tanh(h).flatten(1))


class TokenBag(nn.Module):
    """Token ids (b, *S) -> nn.Embedding -> tanh -> mean over positions -> Linear."""

    def __init__(self, vocab=5, d=3, k=K, padding_idx=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, d, padding_idx=padding_idx)
        self.head = nn.Linear(d, k)

    def forward(self, tokens):
        e = self.embed(tokens)
        return self.head(torch.tanh(e).reshape(e.shape[0], -1, e.shape[-1]).mean(1))


class TokenTransformer(Transformer):
    """The same block over token ids: GC w.r.t. the embedding output (``gc_input="embed"``)."""

    def __init__(self, vocab=7, d=8, T=5, k=K):
        super().__init__(d, d, T, k)
        self.embed = nn.Embedding(vocab, d)

    def forward(self, tokens):
        return super().forward(self.embed(tokens))


class Recurrent(nn.Module):
    def __init__(self, cell=nn.LSTM, batch_first=True, d=3, hidden=5, k=K):
        super().__init__()
        self.rnn = cell(d, hidden, batch_first=batch_first)
        self.batch_first = batch_first
        self.head = nn.Linear(hidden, k)

    def forward(self, x):
        out = self.rnn(x if self.batch_first else x.transpose(0, 1))[0]
        return self.head(out[:, -1] if self.batch_first else out[-1])


def _lstm_no_bias_frozen_hh() -> nn.Module:
    net = Recurrent(lambda d, h, batch_first: nn.LSTM(d, h, batch_first=batch_first, bias=False))
    net.rnn.weight_hh_l0.requires_grad_(False)
    return net


class LSTMGivenState(nn.Module):
    """An LSTM whose initial (h0, c0) is computed from the input (so gradients flow into it too)."""

    def __init__(self, d=3, hidden=5, k=K, cell="lstm"):
        super().__init__()
        self.init = nn.Linear(d, 2 * hidden)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.RNN)(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, k)

    def forward(self, x):
        h0, c0 = torch.tanh(self.init(x[:, 0])).chunk(2, 1)
        if isinstance(self.rnn, nn.RNN):
            out, hn = self.rnn(x, h0[None].contiguous())
            return self.head(out[:, -1] + hn[0] * c0)
        out, (hn, cn) = self.rnn(x, (h0[None].contiguous(), c0[None].contiguous()))
        return self.head(out[:, -1] + hn[0] * cn[0])


class CellLoop(nn.Module):
    """An RNN written as a loop over time: one Linear called at every step (a weight used T times)."""

    def __init__(self, d=3, hidden=4, k=K):
        super().__init__()
        self.inp = nn.Linear(d, hidden)
        self.rec = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, k)

    def forward(self, x):
        h = torch.zeros(x.shape[0], self.rec.in_features, dtype=x.dtype)
        for t in range(x.shape[1]):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
        return self.head(h)


class TiedHead(nn.Module):
    """A weight used twice: the input projection's weight, transposed, is also the output map."""

    def __init__(self, d=5, hidden=6, k=K):
        super().__init__()
        self.inp = nn.Linear(d, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.head = nn.Linear(d, k)

    def forward(self, x):
        h = torch.tanh(self.mid(torch.tanh(self.inp(x))))
        return self.head(h @ self.inp.weight)


class SharedModules(nn.Module):
    """One Parameter held by two modules."""

    def __init__(self, d=5, k=K):
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)
        self.b.weight = self.a.weight
        self.out = nn.Linear(d, k)

    def forward(self, x):
        return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))


class Scale(nn.Module):
    """A layer type no rule knows: forces the generic fallback."""

    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.gain + torch.sin(x) * self.gain.square()


class ConvNormNet(nn.Module):
    def __init__(self, conv: nn.Module, norm: nn.Module | None, n_flat: int, k=K):
        super().__init__()
        self.conv, self.norm = conv, norm
        self.head = nn.Linear(n_flat, k)

    def forward(self, x):
        h = self.conv(x)
        if self.norm is not None:
            h = self.norm(h)
        return self.head(torch.tanh(h).flatten(1))


def _seq(*mods):
    return lambda: nn.Sequential(*mods)


CASES: dict[str, Case] = {
    "transformer": Case(Transformer, (5, 3)),
    # the MultiheadAttention rule (attention.py): time-major, no bias, the attention weights used; a
    # masked call and cross-attention go to the fallback
    "attention_time_major_weights": Case(lambda: Attention(batch_first=False, bias=False, use_weights=True), (5, 4)),
    "attention_masked": Case(lambda: Attention(causal=True), (5, 4)),
    "cross_attention": Case(lambda: Attention(cross=True), (5, 4)),
    # a bare parameter added to a batch-first tensor (added_parameter.py): with a batch axis of 1 and
    # broadcast along a middle axis; added twice, or to a time-major tensor: the fallback
    "added_parameter_batch_axis": Case(lambda: AddedBias((1, 1, 5), d=5), (3, 5)),
    "added_parameter_twice": Case(lambda: AddedBias((4,), twice=True), (3, 4)),
    "added_parameter_time_major": Case(lambda: AddedBias((3, 1, 4), time_major=True), (3, 4)),
    "added_parameter_time_major_t_is_b": Case(lambda: AddedBias((4,), T=B, time_major=True), (B, 4)),
    # the Embedding rule (embedding.py): repeated ids in an example, padding_idx, a 2-D id grid per example
    "token_bag_padding": Case(lambda: TokenBag(padding_idx=0), (6,), vocab=4, gc_input="embed"),
    "token_grid": Case(TokenBag, (2, 3), vocab=5, gc_input="embed"),
    "token_transformer": Case(TokenTransformer, (5,), vocab=7, gc_input="embed"),
    "lstm": Case(lambda: Recurrent(nn.LSTM), (4, 3)),
    # the LSTM rule (lstm.py): time-major, no bias, a frozen recurrent weight, an initial state from the input
    "lstm_time_major": Case(lambda: Recurrent(nn.LSTM, batch_first=False), (4, 3)),
    "lstm_no_bias_frozen_hh": Case(_lstm_no_bias_frozen_hh, (4, 3)),
    "lstm_given_state": Case(LSTMGivenState, (4, 3)),
    "lstm_two_layers": Case(
        lambda: Recurrent(lambda d, h, batch_first: nn.LSTM(d, h, 2, batch_first=batch_first)), (4, 3)
    ),
    # the RNN rule (lstm.py): ReLU, time-major, an initial state from the input
    "rnn_relu_time_major": Case(
        lambda: Recurrent(lambda d, h, batch_first: nn.RNN(d, h, nonlinearity="relu", batch_first=batch_first), False),
        (4, 3),
    ),
    "rnn_given_state": Case(lambda: LSTMGivenState(cell="rnn"), (4, 3)),
    "gru_time_major": Case(lambda: Recurrent(nn.GRU, batch_first=False), (4, 3)),
    "rnn": Case(lambda: Recurrent(nn.RNN), (4, 3)),
    "cell_loop": Case(CellLoop, (4, 3)),
    "tied_head": Case(TiedHead, (5,)),
    "shared_modules": Case(SharedModules, (5,)),
    "repeated_in_sequential": Case(
        lambda: (lambda lin: nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(5, K)))(nn.Linear(5, 5)), (5,)
    ),
    "fallback_only_layer": Case(lambda: nn.Sequential(nn.Linear(5, 6), Scale(6), nn.Linear(6, K)), (5,)),
    "layernorm_mlp": Case(_seq(nn.Linear(5, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, K)), (5,)),
    "weight_norm": Case(_seq(parametrizations.weight_norm(nn.Linear(5, 6)), nn.Tanh(), nn.Linear(6, K)), (5,)),
    "conv1d_groupnorm": Case(lambda: ConvNormNet(nn.Conv1d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), 24), (3, 6)),
    # Conv1d's rule (the Conv2d rule on height 1): stride, dilation, groups (direct form) ...
    "conv1d_strided_groups": Case(
        lambda: ConvNormNet(nn.Conv1d(4, 6, 3, stride=2, dilation=2, groups=2, padding=2), None, 6 * 5), (4, 9)
    ),
    # ... 'same' padding with an even kernel and reflect mode, no bias ...
    "conv1d_same_reflect": Case(
        lambda: ConvNormNet(nn.Conv1d(2, 3, 4, padding="same", padding_mode="reflect", bias=False), None, 3 * 7),
        (2, 7),
    ),
    # ... and few output positions, where the ghost form is the cheaper one.
    "conv1d_ghost": Case(lambda: ConvNormNet(nn.Conv1d(8, 4, 5, stride=3), None, 4 * 2), (8, 10)),
    "conv3d_instancenorm": Case(
        lambda: ConvNormNet(nn.Conv3d(2, 3, 2, stride=(1, 2, 1)), nn.InstanceNorm3d(3, affine=True), 3 * 2 * 1 * 2),
        (2, 3, 3, 3),
    ),
    "instancenorm_running_stats": Case(
        _seq(
            nn.Unflatten(1, (2, 3)),
            nn.InstanceNorm1d(2, affine=True, track_running_stats=True).eval(),
            nn.Flatten(),
            nn.Linear(6, K),
        ),
        (6,),
    ),
    "conv_transpose1d": Case(lambda: ConvNormNet(nn.ConvTranspose1d(2, 3, 3, stride=2), None, 3 * 9), (2, 4)),
    "conv_transpose2d": Case(
        lambda: ConvNormNet(nn.ConvTranspose2d(2, 2, 2, stride=2, groups=2), nn.GroupNorm(1, 2), 2 * 6 * 6), (2, 3, 3)
    ),
    "conv_transpose3d": Case(lambda: ConvNormNet(nn.ConvTranspose3d(1, 2, 2), None, 2 * 27), (1, 2, 2, 2)),
}
