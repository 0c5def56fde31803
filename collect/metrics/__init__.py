"""gclab metric engine: exact GC, Eq. 6–8 terms, Theorem 5.1 terms, batch functional
dimension and other complexity measures, from one forward + one batched backward.

Public API (names fixed, see issue 3)::

    geometric_complexity(model, x, *, n_projections=None) -> Tensor (b,)
    step_metrics(model, x, y, *, loss="cross_entropy", set_grad=False) -> dict[str, float]
    theorem_terms(model, x) -> dict[str, Tensor]
    functional_dimension(model, x, *, outputs="logits", return_spectrum=False) -> int | (int, ndarray)

Models: any ``nn.Module`` whose parametrized layers are Linear, Conv2d or eval-mode
BatchNorm and which treats examples independently; anything else raises a TypeError /
ValueError naming the module.
"""
from collect.metrics.capture import check_model, run_pass
from collect.metrics.fdim import functional_dimension, ntk_gram, spectrum_summary
from collect.metrics.gc import geometric_complexity, geometric_complexity_estimate
from collect.metrics.measures import batch_loss, dist_from_init, param_norm_sq, sharpness, spectral_product
from collect.metrics.rules import RULES, Rule, register_rule
from collect.metrics.step import step_metrics, step_terms
from collect.metrics.theorem import theorem_terms

__all__ = [
    "geometric_complexity", "geometric_complexity_estimate", "step_metrics", "step_terms",
    "theorem_terms", "functional_dimension", "ntk_gram", "spectrum_summary",
    "param_norm_sq", "spectral_product", "dist_from_init", "sharpness", "batch_loss",
    "check_model", "run_pass", "RULES", "Rule", "register_rule",
]
