"""Per-layer rules: what one parametrized layer contributes to every metric.

A rule sees two signals from the one pass (docs/METRICS.md, "Ghost norms" and "Per-layer rules"):

- ``h``: the layer's input on the batch, shape ``(b, *in)``;
- ``delta``: the gradients of ``m`` cotangent rows w.r.t. the layer's output (its
  pre-activation), shape ``(m, b, *out)``. Row ``i`` of a one-hot pass is ``∂f^i/∂z``.

The parameter gradient of layer l for example x and row i is a bilinear form in
``(delta[i, x], h[x])`` (``δ hᵀ`` for a dense layer), so norms, batch gradients and NTK
Gram blocks follow without ever forming per-example gradients for dense layers
("ghost norms", as in BackPACK / Opacus ghost clipping). Adding a layer type = writing one
``Rule`` subclass and registering it in ``RULES``.

Only trainable parameters (``requires_grad``) count as θ: a frozen weight or bias simply
drops its term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class DenseContext:
    """Linear on (b, n): the input h (b, n) and ||h||² + 1 (b,) (each term only if trainable)."""

    h: Tensor
    hsq1: Tensor


@dataclass(frozen=True)
class SeqContext:
    """Linear on (b, ..., n): the input as positions, A (b, g=1, p=n, T)."""

    A: Tensor


@dataclass(frozen=True)
class ConvContext:
    """Conv2d: the unfolded input A (b, g, p = C_in/g·kh·kw, T), the (padded) input h, the padding the
    weight-gradient kernel uses, and a folded BatchNorm's per-output-channel factor (g, q) or None."""

    A: Tensor
    h: Tensor
    padding: tuple[int, int]
    scale: Tensor | None


@dataclass(frozen=True)
class BatchNormContext:
    """Eval BatchNorm: x̂ = (h − running_mean)/sqrt(running_var + eps), shape of h (b, C, *)."""

    xhat: Tensor


class Rule:
    """One parametrized layer type's contribution to every metric (registered in ``RULES``).

    Shapes, for every rule and method (not repeated below): ``h`` the layer input (b, *in);
    ``delta`` the m row cotangents of the layer output (m, b, *out), or ONE row (b, *out) for
    ``grads``; ``w`` per-example row weights (b, m); results: ``sq_norms`` (m, b), ``per_example``
    (m, b, P_l) in the order of ``trainable``, ``grads`` name -> parameter shape, ``gram``
    (m·b, m·b) rows ordered (row, example). ``ctx = prepare(h)`` (a small frozen dataclass named
    for the layer, e.g. ``DenseContext``) is computed once per pass and reused for every row."""

    param_names: tuple[str, ...] = ("weight", "bias")
    # True for a rule whose layer the autograd path recomputes with ``replay(inp, out, kwargs)`` (a layer
    # whose weights are used many times per forward, an RNN's at every step, or whose parameters act
    # inside: attention): replay gives (the output to use, the tensor whose row cotangents are
    # ``delta``, the ``h`` for ``prepare``), or None when it cannot (the layer goes to the fallback).
    replays = False
    # True if ``prepare(h, out_scale=s)`` is supported: delta then holds the layer's output cotangent
    # divided by the per-channel factor s, which the rule applies itself (a folded eval BatchNorm).
    takes_out_scale = False

    def __init__(self, module: nn.Module):
        self.module = module
        ps = {n: getattr(module, n, None) for n in self.param_names}
        self.trainable = {n: p for n, p in ps.items() if isinstance(p, nn.Parameter) and p.requires_grad}

    @classmethod
    def supports(cls, module: nn.Module) -> bool:
        """False if this module's options put it outside the rule (the plan then sends it to the fallback)."""
        return True

    def params(self) -> list[nn.Parameter]:
        return list(self.trainable.values())

    def n_params(self) -> int:
        return sum(p.numel() for p in self.trainable.values())

    def prepare(self, h: Tensor):
        raise NotImplementedError

    def replay(self, inp: tuple, out, kwargs: dict | None = None) -> tuple[object, Tensor, Tensor] | None:
        raise NotImplementedError

    def sq_norms(self, ctx, delta: Tensor) -> Tensor:
        """(m, b): ||∂(row i)/∂θ_l at example x||²."""
        raise NotImplementedError

    def grads(self, ctx, delta: Tensor) -> dict[str, Tensor]:
        """Σ_x of per-example parameter gradients for ONE row ``delta`` of shape (b, *out)."""
        raise NotImplementedError

    def per_example(self, ctx, delta: Tensor) -> Tensor:
        """(m, b, P_l): per-example, per-row gradients, flattened (tests, conv Gram blocks)."""
        raise NotImplementedError

    def gram(self, ctx, delta: Tensor) -> Tensor:
        """(m·b, m·b): this layer's block of J Jᵀ, rows ordered (row, example)."""
        J = self.per_example(ctx, delta).flatten(0, 1)
        return J @ J.T

    def row_terms(self, ctx, delta: Tensor, w: Tensor, factors=None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """What a training step needs from the m rows δ (m, b, *out) and per-example weights
        w (b, m) of the mixed row δ^w(x) = Σ_i w[x, i] δ_i(x): (``sq_norms`` of the m rows (m, b),
        ||∂δ^w/∂θ_l at x||² (b,), ``grads`` of δ^w). Rules override it to share work.
        ``factors``: ``LayerSignal.factors`` of δ, or None; a rule may ignore it."""
        d = mix(delta, w)
        return self.sq_norms(ctx, delta), self.sq_norms(ctx, d[None])[0], self.grads(ctx, d)


def mix(delta: Tensor, w: Tensor) -> Tensor:
    """δ^w (b, *out) = Σ_i w[x, i] δ_i(x): a (1×m)(m×N) product per example, one bmm for the batch."""
    m, b = delta.shape[:2]
    rows = delta.transpose(0, 1) if delta.dim() == 3 else delta.reshape(m, b, -1).transpose(0, 1)
    out = torch.bmm(w.unsqueeze(1), rows)
    return out.squeeze(1) if delta.dim() == 3 else out.reshape(delta.shape[1:])


def mixed_from_per_example(J: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``row_terms`` from materialized per-example gradients J (m, b, P): (S, pe, Σ_x J^w (P,))."""
    Jw = torch.einsum("bm,mbp->bp", w, J)
    return sq(J, -1), sq(Jw, -1), Jw.sum(0)


def sq(t: Tensor, dim) -> Tensor:
    """Σ t² over ``dim`` without a t-sized temporary."""
    return torch.linalg.vector_norm(t, dim=dim).square_()


def split_flat(flat: Tensor, params: dict[str, Tensor]) -> dict[str, Tensor]:
    """A flat gradient (P,) in ``per_example`` order, as one tensor per trainable parameter."""
    out, i = {}, 0
    for name, p in params.items():
        out[name] = flat[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    return out


class LinearRule(Rule):
    """Dense layer z = W h + b. Inputs with extra dims (b, ..., n) sum over the positions."""

    def prepare(self, h: Tensor) -> DenseContext | SeqContext:
        if h.dim() == 2:
            hsq = sq(h, 1) if "weight" in self.trainable else h.new_zeros(h.shape[0])
            return DenseContext(h, hsq + (1.0 if "bias" in self.trainable else 0.0))
        b, n = h.shape[0], h.shape[-1]
        return SeqContext(h.reshape(b, -1, n).transpose(1, 2).unsqueeze(1))

    def _seq_delta(self, delta: Tensor) -> Tensor:
        m, b, q = delta.shape[0], delta.shape[1], delta.shape[-1]
        return delta.reshape(m, b, -1, q).transpose(2, 3).unsqueeze(2)  # (m, b, g=1, q, T)

    def sq_norms(self, ctx, delta):
        if isinstance(ctx, DenseContext):
            # ||δ||²(||h||² + 1): the ghost norm (vector_norm reads δ once, no temporary).
            return torch.linalg.vector_norm(delta, dim=-1).square_().mul_(ctx.hsq1)
        return seq_sq_norms(ctx.A, self._seq_delta(delta), self.trainable)

    def grads(self, ctx, delta):
        out = {}
        if isinstance(ctx, DenseContext):
            if "weight" in self.trainable:
                out["weight"] = delta.T @ ctx.h
            if "bias" in self.trainable:
                out["bias"] = delta.sum(0)
            return out
        G = self._seq_delta(delta[None])[0]
        if "weight" in self.trainable:
            out["weight"] = torch.einsum("bgqt,bgpt->qp", G, ctx.A)
        if "bias" in self.trainable:
            out["bias"] = G.sum((0, 3)).reshape(-1)
        return out

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        parts = []
        if isinstance(ctx, DenseContext):
            if "weight" in self.trainable:
                parts.append(torch.einsum("mbq,bp->mbqp", delta, ctx.h).reshape(m, b, -1))
            if "bias" in self.trainable:
                parts.append(delta)
        else:
            parts = seq_per_example(ctx.A, self._seq_delta(delta), self.trainable)
        return torch.cat(parts, -1) if parts else delta.new_zeros(m, b, 0)

    def row_terms(self, ctx, delta, w, factors=None):
        if not isinstance(ctx, DenseContext):
            return super().row_terms(ctx, delta, w)
        if factors is None:
            S, d = self.sq_norms(ctx, delta), mix(delta, w)
        else:
            # δ_i(x) = R_i ⊙ M_x: ||δ_i(x)||² = (R² M²ᵀ)[i, x] and δ^w = (w R) ⊙ M, small products
            # in place of two passes over the (m, b, n) rows.
            R, M = factors
            if M is None:
                S, d = sq(R, 1)[:, None] * ctx.hsq1, w @ R
            else:
                S, d = torch.mm(R.square(), M.square().T).mul_(ctx.hsq1), (w @ R).mul_(M)
        return S, self.sq_norms(ctx, d), self.grads(ctx, d)

    def gram(self, ctx, delta):
        if not isinstance(ctx, DenseContext):
            return super().gram(ctx, delta)
        m, b = delta.shape[:2]
        D = delta.reshape(m * b, -1)
        h = ctx.h
        Kh = h @ h.T if "weight" in self.trainable else h.new_zeros(b, b)
        if "bias" in self.trainable:
            Kh = Kh + 1.0
        # K[(i,x),(j,x')] = <δ^i(x), δ^j(x')> (<h(x), h(x')> + 1): no per-example gradient formed.
        return (D @ D.T) * Kh.repeat(m, m)


class Conv2dRule(Rule):
    """Conv2d through the unfolded input A (im2col): per-example weight gradient = G Aᵀ.
    With ``out_scale`` s the true delta is s ⊙ delta over output channels, so every gradient is the
    unscaled one times s on its output-channel axis: applied to the small products, not to delta."""

    takes_out_scale = True

    def prepare(self, h: Tensor, out_scale: Tensor | None = None) -> ConvContext:
        c = self.module
        if isinstance(c.padding, str) or c.padding_mode != "zeros":
            # 'same' / reflect / circular: pad exactly as the module does, then unfold unpadded.
            mode = "constant" if c.padding_mode == "zeros" else c.padding_mode
            h, pad = F.pad(h, _pad_widths(c), mode=mode), (0, 0)
        else:
            pad = c.padding
        A = im2col(h, c.kernel_size, c.dilation, pad, c.stride)
        b, _, T = A.shape
        g = c.groups
        scale = None if out_scale is None else out_scale.reshape(g, -1)  # (g, q)
        return ConvContext(A.reshape(b, g, -1, T), h, pad, scale)

    def _delta(self, delta: Tensor) -> Tensor:
        m, b, C = delta.shape[:3]
        g = self.module.groups
        return delta.reshape(m, b, g, C // g, -1)  # (m, b, g, q, T)

    def sq_norms(self, ctx, delta):
        return seq_sq_norms(ctx.A, self._delta(delta), self.trainable, scale=ctx.scale)

    def grads(self, ctx, delta):
        out = self._unscaled_grads(ctx, delta)
        if ctx.scale is not None:
            s = ctx.scale.reshape(-1)
            out = {n: v * s.view(-1, *([1] * (v.dim() - 1))) for n, v in out.items()}
        return out

    def _unscaled_grads(self, ctx, delta):
        out = {}
        if "weight" in self.trainable:
            # The aten weight gradient (as loss.backward() runs it): ~6x faster than the unfold einsum.
            # evidence: make bench peers/resnet18_quarter (docs/METRICS.md "Per-layer rules", conv, ghost)
            c = self.module
            out["weight"] = torch.ops.aten.convolution_backward(
                delta,
                ctx.h,
                c.weight,
                None,
                c.stride,
                ctx.padding,
                c.dilation,
                False,
                (0, 0),
                c.groups,
                (False, True, False),
            )[1]
        if "bias" in self.trainable:
            out["bias"] = delta.sum((0, 2, 3))
        return out

    def per_example(self, ctx, delta):
        m, b = delta.shape[:2]
        G = self._delta(delta)
        if ctx.scale is not None:
            G = G * ctx.scale[:, :, None]
        parts = seq_per_example(ctx.A, G, self.trainable)
        return torch.cat(parts, -1) if parts else delta.new_zeros(m, b, 0)

    def row_terms(self, ctx, delta, w, factors=None):
        A, G, scale = ctx.A, self._delta(delta), ctx.scale
        # ghost vs direct by FLOP count: evidence make bench peers/resnet18_quarter (see _ghost_is_cheaper)
        if "weight" in self.trainable and _ghost_is_cheaper(A, G):
            AA = torch.einsum("bgpt,bgps->bgts", A, A)  # shared by the m rows and the mixed row
            d = mix(delta, w)
            return (
                seq_sq_norms(A, G, self.trainable, AA, scale),
                seq_sq_norms(A, self._delta(d[None]), self.trainable, AA, scale)[0],
                self.grads(ctx, d),
            )
        # Direct: the m rows' per-example gradients are formed anyway; the mixed row is their combination.
        m, b, g, q, T = G.shape
        # evidence: make bench peers/cnn (small J), peers/resnet18_quarter (large J); docs/METRICS.md "Per-layer rules"
        if m * b * g * q * A.shape[2] < SMALL_J:  # small: form J (m, b, P) and mix it (fewer, simpler kernels)
            S, pe, total = mixed_from_per_example(self.per_example(ctx, delta), w)
            return S, pe, split_flat(total, self.trainable)
        S, pe, grads = G.new_zeros(m, b), G.new_zeros(b), {}
        if "weight" in self.trainable:
            Jt = _direct(A, G, scale)  # kept in the product's layout: no J-sized copy
            # evidence: make bench peers/cnn_stride2 (docs/METRICS.md "Per-layer rules", direct)
            S += sq(Jt, -1).sum((1, 2)).T  # the contiguous q first: measured 2-7x faster
            Jw = (Jt * w.view(b, 1, 1, m, 1)).sum(3)  # (b, g, p, q)
            pe += sq(Jw, -1).sum((1, 2))
            grads["weight"] = Jw.sum(0).transpose(1, 2).reshape(self.module.weight.shape)  # pyright: ignore[reportCallIssue]
        if "bias" in self.trainable:
            B = _bias_sums(G, scale)
            Bw = torch.einsum("bm,mbgq->bgq", w, B)
            S += sq(B, (2, 3))
            pe += sq(Bw, (1, 2))
            grads["bias"] = Bw.sum(0).reshape(-1)
        return S, pe, grads


def im2col(h: Tensor, kernel, dilation, padding, stride) -> Tensor:
    """``F.unfold(h, ...)`` (b, C·kh·kw, Ho·Wo), as one copy of a strided view of the padded input:
    the same numbers, measured 1.5-2.5x faster than unfold's kernel on CPU (docs/METRICS.md).
    Evidence: make bench peers/resnet18_quarter (docs/METRICS.md "Per-layer rules", im2col)."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel, dilation, padding, stride
    if ph or pw:
        h = F.pad(h, (pw, pw, ph, ph))
    h = h.contiguous()
    b, C, H, W = h.shape
    Ho, Wo = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    view = h.as_strided((b, C, kh, kw, Ho, Wo), (C * H * W, H * W, dh * W, dw, sh * W, sw))
    return view.reshape(b, C * kh * kw, Ho * Wo)


def _pad_widths(c: nn.Conv2d) -> list[int]:
    """The F.pad widths (last dim first) Conv2d applies: 'same' puts the odd unit of d·(k − 1) on
    the right, as torch's conv does; a number pads both sides (torch keeps this list private)."""
    widths = []
    for i in (1, 0):
        if c.padding == "valid":
            left = right = 0
        elif c.padding == "same":
            total = c.dilation[i] * (c.kernel_size[i] - 1)
            left, right = total // 2, total - total // 2
        else:
            left = right = c.padding[i]
        widths += [left, right]
    return widths


# Direct per-example gradients above this many elements stay in the product's layout (no J-sized copy).
SMALL_J = 1 << 20


def _ghost_is_cheaper(A: Tensor, G: Tensor) -> bool:
    """Ghost <AᵀA, GᵀG> costs T²(p + m·q) per example, the direct G Aᵀ m·T·q·p: the FLOP count
    picks the measured winner on every ResNet stage (docs/METRICS.md).
    Evidence: make bench peers/resnet18_quarter and peers/residual (docs/METRICS.md "Per-layer rules", ghost table)."""
    m, q, T, p = G.shape[0], G.shape[3], G.shape[4], A.shape[2]
    return T * T * (p + m * q) < m * T * q * p


def seq_sq_norms(A: Tensor, G: Tensor, trainable, AA: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
    """||Σ_t (s ⊙ G_t) A_tᵀ||² per (row, example), by whichever of two exact forms is cheaper:
    direct (form the per-example gradient) or ghost (<AᵀA, GᵀG> over position pairs).
    ``scale`` s (g, q): a per-output-channel factor on G (None: 1)."""
    m, b = G.shape[:2]
    out = G.new_zeros(m, b)
    if "weight" in trainable:
        if AA is not None or _ghost_is_cheaper(A, G):
            AA = torch.einsum("bgpt,bgps->bgts", A, A) if AA is None else AA
            # <GᵀG, AᵀA> as Σ (G·AᵀA) ⊙ G: one (m·q, T)(T, T) product per example (no (m, T, T) temporary),
            # as an explicit bmm on the example-major rows (a free view for groups = 1): 1.1-1.4x faster
            # than the einsum, which permutes its output.
            # evidence: make bench peers/resnet18_quarter (docs/METRICS.md "Per-layer rules", ghost)
            g, q, T = G.shape[2:]
            Gb = G.permute(1, 2, 0, 3, 4).reshape(b * g, m * q, T)
            per_q = torch.bmm(Gb, AA.reshape(b * g, T, T)).mul_(Gb).sum(2).view(b, g, m, q)
            if scale is not None:
                per_q.mul_(scale.square()[None, :, None, :])
            out = out + per_q.sum((1, 3)).T
        else:
            out = out + sq(_direct(A, G, scale), (1, 2, 4)).T
    if "bias" in trainable:
        out = out + sq(_bias_sums(G, scale), (2, 3))
    return out


def _direct(A: Tensor, G: Tensor, scale: Tensor | None) -> Tensor:
    """Per-example, per-row weight gradients (b, g, p, m, q) = A (s ⊙ G)ᵀ, in the product's layout."""
    Jt = torch.einsum("bgpt,mbgqt->bgpmq", A, G)
    return Jt if scale is None else Jt.mul_(scale[None, :, None, None, :])


def _bias_sums(G: Tensor, scale: Tensor | None) -> Tensor:
    """Per-example, per-row bias gradients (m, b, g, q) = Σ_t s ⊙ G_t."""
    B = G.sum(4)
    return B if scale is None else B.mul_(scale)


def seq_per_example(A: Tensor, G: Tensor, trainable) -> list[Tensor]:
    m, b = G.shape[:2]
    parts = []
    if "weight" in trainable:
        if 4 * A.shape[2] <= m * G.shape[3]:
            # A (p, T) on the left when p is small (a first layer's C_in·kh·kw): measured ~1.6x faster.
            # evidence: make bench peers/cnn_stride2 (first conv, p = 27; docs/METRICS.md "Per-layer rules", direct)
            parts.append(torch.einsum("bgpt,mbgqt->bgpmq", A, G).permute(3, 0, 1, 4, 2).reshape(m, b, -1))
        else:  # otherwise G Aᵀ: its (m, b, q, p) copy moves whole rows (measured 1.3x faster at p ≈ m·q)
            # evidence: make bench peers/resnet18_quarter (deeper convs; docs/METRICS.md "Per-layer rules")
            parts.append(torch.einsum("mbgqt,bgpt->mbgqp", G, A).reshape(m, b, -1))
    if "bias" in trainable:
        parts.append(G.sum(4).reshape(m, b, -1))
    return parts
