"""Independent brute-force references for the metric tests (float64, materialized Jacobians).

Nothing here uses collect.metrics: per-example Jacobians come from torch.func (vmap(jacrev))
or from plain per-example autograd loops, and every Eq. 6–8 term is summed from its
definition (explicit i≠j and x≠x' pair sums), not from the identities the engine uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU}


def mlp(d, widths, k, act="relu", bias=True, flatten=False, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = [nn.Flatten()] if flatten else []
    n = d
    for w in widths:
        layers += [nn.Linear(n, w, bias=bias), ACTS[act]()]
        n = w
    layers.append(nn.Linear(n, k, bias=bias))
    net = nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) / max(p.shape[-1], 1) ** 0.5 * 1.3)
    return net


def randomize_(net, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            fan = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale / fan**0.5)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


def _split(model):
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b for n, b in model.named_buffers()}
    return params, {**frozen, **buffers}


def jacobians(model, x):
    """Per-example Jacobians by vmap(jacrev): (Jθ (b, k, P), Jx (b, k, *x.shape[1:]))."""
    params, rest = _split(model)

    def f(p, xi):
        return functional_call(model, {**p, **rest}, (xi.unsqueeze(0),))[0]

    Jp = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    b, k = x.shape[0], next(iter(Jp.values())).shape[1]
    Jt = torch.cat([Jp[n].reshape(b, k, -1) for n in params], 2)
    Jx = vmap(jacrev(f, argnums=1), in_dims=(None, 0))(params, x)
    return Jt, Jx


def jacobians_loop(model, x, gc_input=None):
    """Same as ``jacobians`` with one autograd call per (example, logit). ``gc_input``: the input
    Jacobian is taken w.r.t. that submodule's output e (a zero leaf z added to e: ∂f/∂z = ∂f/∂e)."""
    params = [p for p in model.parameters() if p.requires_grad]
    mod = dict(model.named_modules())[gc_input] if gc_input else None
    rows_t, rows_x = [], []
    for xi in x:
        xi = xi.detach().clone().unsqueeze(0)
        leaf = {}
        if mod is None:
            leaf["z"] = xi.requires_grad_(True)
            out = model(xi)[0]
        else:

            def add_leaf(_m, _i, e, leaf=leaf):
                leaf["z"] = torch.zeros_like(e).requires_grad_(True)
                return e + leaf["z"]

            handle = mod.register_forward_hook(add_leaf)
            try:
                out = model(xi)[0]
            finally:
                handle.remove()
        gt, gx = [], []
        for i in range(out.shape[0]):
            g = torch.autograd.grad(out[i], params + [leaf["z"]], retain_graph=True, allow_unused=True)
            gt.append(
                torch.cat([(torch.zeros_like(p) if a is None else a).reshape(-1) for p, a in zip(params, g[:-1])])
            )
            gx.append(torch.zeros_like(leaf["z"][0]) if g[-1] is None else g[-1][0])
        rows_t.append(torch.stack(gt))
        rows_x.append(torch.stack(gx))
    return torch.stack(rows_t), torch.stack(rows_x)


def per_example_loss(out, y, loss):
    if loss == "cross_entropy":
        return F.cross_entropy(out, y, reduction="none")
    y = y.reshape(out.shape)
    return 0.5 * (out - y).square().sum(1)


def step_reference(model, x, y, loss, loop=False, gc_input=None):
    """Every step_metrics key from its definition (``gc_input``: see ``jacobians_loop``; implies the loop)."""
    Jt, Jx = jacobians_loop(model, x, gc_input) if loop or gc_input else jacobians(model, x)
    b, k, P = Jt.shape
    xr = x.detach()
    out = model(xr)
    # ε = ∂L_x/∂f by autograd (not the softmax − onehot formula).
    outd = out.detach().requires_grad_(True)
    eps = torch.autograd.grad(per_example_loss(outd, y, loss).sum(), outd)[0]
    lx = per_example_loss(out.detach(), y, loss)
    gx = torch.einsum("bk,bkp->bp", eps, Jt)  # ∇_θ L_x
    S = Jt.square().sum(2)  # ||∇_θ f^i(x)||²
    R = (eps.square() * S).sum() / b**2
    inner = torch.einsum("bip,bjp->bij", Jt, Jt)
    off = ~torch.eye(k, dtype=torch.bool)
    A = (eps[:, :, None] * eps[:, None, :] * inner)[:, off].sum() / b**2  # Eq. 8, i ≠ j
    Gx = gx @ gx.T
    C = Gx[~torch.eye(b, dtype=torch.bool)].sum() / b**2  # Eq. 7, x ≠ x'
    # ||∇_θ L_B||² straight from loss.backward() on the batch loss.
    params = [p for p in model.parameters() if p.requires_grad]
    L = per_example_loss(model(xr), y, loss).mean()
    gB = torch.autograd.grad(L, params)
    gnorm = sum(t.square().sum() for t in gB)
    acc = (out.argmax(1) == y).double().mean() if loss == "cross_entropy" else torch.tensor(float("nan"))
    # The reference must satisfy Eq. 6 itself: its R, A, C come from their definitions and
    # ||∇L_B||² from autograd, so a wrong reference cannot pass silently.
    if gnorm.dtype == torch.float64:
        assert torch.allclose(R + A + C, gnorm, rtol=1e-9, atol=1e-300), "brute-force reference breaks Eq. 6"
    return {
        "gc": Jx.reshape(b, -1).square().sum(1).mean(),
        "grad_norm_sq": gnorm,
        "residual_term": R,
        "label_alignment": A,
        "batch_alignment": C,
        "per_example_grad_norm_sq": gx.square().sum(1).mean(),
        "train_loss": lx.mean(),
        "train_acc": acc,
        "gc_x": Jx.reshape(b, -1).square().sum(1),
        "logit_grad_sq": S,
        "per_example_grad_sq": gx.square().sum(1),
    }


def batch_grads(model, x, y, loss):
    """∇_θ L_B by plain loss.backward()."""
    model.zero_grad(set_to_none=True)
    per_example_loss(model(x), y, loss).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def close(a, b, rtol, scale=0.0):
    """|a − b| ≤ rtol·(|b| + scale): relative, with an absolute floor ``rtol·scale`` for
    quantities that can cross zero (A_B, C_B)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return bool(((a - b).abs() <= rtol * (b.abs() + scale)).all())


def batch_reference(model64, x, y):
    """(GC, loss, ||∇θ L_B||²) in float64: per-example input Jacobians by torch.func, autograd for ∇θ."""
    jac = vmap(jacrev(lambda xi: model64(xi.unsqueeze(0))[0]))(x)  # (b, k, d)
    gc = jac.square().sum(dim=(1, 2)).mean()
    loss = F.cross_entropy(model64(x), y)
    grads = torch.autograd.grad(loss, list(model64.parameters()))
    return float(gc.detach()), float(loss.detach()), float(sum(g.square().sum() for g in grads)), grads
