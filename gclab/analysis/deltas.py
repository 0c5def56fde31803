"""Each paper row's Holm family and smallest effect of interest δ, defined once (docs/EXPERIMENTS.md,
"Families and smallest effects of interest", gives the reason for each; fixed before any data).

A family is one figure of one paper ("gc:fig4", "bfd:§6"): Holm's correction runs within it
(`analysis.verdict.holm`). δ is stated on a scale that does not depend on the store (a ratio over
the whole grid, a fraction of the mean); `declared` turns it into the row's own scale: divided by
the number of grid steps `over` (slopes per grid level), times `unit` (a mean the row is measured
against). A row's `value` minus `reference` is its effect; `delta` bounds the effects that do not
matter, and the equivalence test (`verdict.judge`) calls a row `absent` when it shows the effect
inside ±δ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOG_10PCT = math.log(1.1)  # a 10% change of a positive statistic, on the log scale


@dataclass(frozen=True)
class Spec:
    family: str  # Holm family: one figure of one paper
    delta: float  # smallest effect of interest, on the scale `scale` names
    scale: str  # what δ measures, as the docs table states it
    reference: float = 0.0  # the value of no effect on the row's scale


DELTAS: dict[str, Spec] = {
    "fig1:arc": Spec("gc:fig1", 0.1, "arc-length ratio to the minimal interpolant's", reference=1.0),
    "fig1:own_arc": Spec(
        "gc:fig1", 0.05, "largest arc / own-polyline ratio over evals, around the bound 1.1", reference=1.1
    ),
    "fig1:gc_growth": Spec("gc:fig1", 0.05, "GC(first eval) / GC(fit), around the 0.1 boundary", reference=0.1),
    "fig2:gc_first": Spec("gc:fig2", LOG_10PCT, "log GC at init over the depth grid"),
    "fig2:abs_output": Spec("gc:fig2", LOG_10PCT, "log mean |output| at init over the depth grid"),
    "fig3:gc": Spec("gc:fig3", LOG_10PCT, "log GC over the strength grid"),
    "gcreg:gc": Spec("gc:smC4", LOG_10PCT, "log GC over the penalty grid"),
    "gcreg:test_acc": Spec("gc:smC4", 0.01, "test accuracy over the penalty grid"),
    "fig4:gc": Spec("gc:fig4", LOG_10PCT, "log GC over the lr (batch) grid"),
    "fig4:test_acc": Spec("gc:fig4", 0.01, "test accuracy over the lr (batch) grid"),
    "fig4_momentum:gc": Spec("gc:smC7", LOG_10PCT, "log GC over the lr (batch) grid"),
    "fig4_adam:gc": Spec("gc:smC8", LOG_10PCT, "log GC over the lr (batch) grid"),
    "fig4_momentum:test_acc": Spec("gc:smC7", 0.01, "test accuracy over the lr (batch) grid"),
    "fig4_adam:test_acc": Spec("gc:smC8", 0.01, "test accuracy over the lr (batch) grid"),
    "igr:elasticity": Spec("gc:fig4", LOG_10PCT / math.log(10), "d log GC / d log h (or b, h/b)"),
    "fig5:test_loss_peak": Spec("gc:fig5", 0.1, "peak height S as a fraction of the mean test loss"),
    "fig5:gc_peak": Spec("gc:fig5", 0.1, "peak height S as a fraction of the mean GC"),
    "fig5:ucurve": Spec("gc:fig5", 0.1, "weaker arm's change of test loss as a fraction of the mean test loss"),
    "bfd:fraction": Spec("bfd:§6", 0.01, "per-run difference as a fraction of the ceiling bfd_max"),
}


def declared(key: str, *, over: float = 1.0, unit: float = 1.0) -> dict:
    """`claim(...)` keyword arguments (family, delta, reference) of the paper row `key` of `DELTAS`.

    `over`: grid steps the row's value is per (δ over the grid / steps); `unit`: the mean δ is a
    fraction of. Raises KeyError naming the table when `key` is not declared."""
    if key not in DELTAS:
        raise KeyError(f"paper row {key!r} has no family/δ; add it to DELTAS in gclab/analysis/deltas.py")
    spec = DELTAS[key]
    scale = abs(unit) / over if over > 0 and math.isfinite(unit) and unit != 0 else None
    return {
        "family": spec.family,
        "delta": spec.delta * scale if scale else None,
        "reference": spec.reference,
    }
