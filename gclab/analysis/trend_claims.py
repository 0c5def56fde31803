"""The trend claims, one `Heuristic` per row (docs/EXPERIMENTS.md, "The tests behind the claims"):
which sweep, axis and statistic, the paper's direction, where GC is read (`GC_POINT`, with a
`toolkit` robustness row at the other point), its kind, source and `analysis.deltas` key, and why
a row holds by construction. `analysis.trends` fits them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gclab.analysis.trend_figures import FIG3_REGS
from gclab.store.sweeps import FIG4_SWEEPS

PAPER_FAMILY = "trunc_normal_fan_in/relu"  # init/activation of the paper's standard scheme (GC paper §3)
POOLED = "pooled"


DECREASES, INCREASES = -1, +1  # the paper's direction of y as x grows: the sign of the slope it claims


@dataclass(frozen=True, kw_only=True)
class Heuristic:
    """One claimed trend: `y` moves in `direction` (DECREASES or INCREASES) as `x` grows in `sweep`."""

    name: str
    sweep: str
    x: str  # runs column that varies
    y: str  # statistic column of the run frame
    direction: int  # DECREASES or INCREASES
    claim: str
    log: bool = True  # regress log y (positive statistics such as GC)
    fixed: str | None = None  # the other fig4 axis, held at the value with the widest grid of x
    source: str = ""  # where the paper states the claim
    family: str | None = None  # fig2: one init/activation family, or POOLED (all, family fixed effects)
    kind: str = "paper"
    spec: str | None = None  # its key in analysis.deltas.DELTAS (paper rows); default "<sweep>:<y>"
    note: str = ""  # why the row holds by construction, or what it does and does not test


# Where GC is read (docs/EXPERIMENTS.md, measurement points): the paper's point per sweep, and the
# other point, which a `toolkit` robustness row reads so a reader sees whether the verdict depends on it.
GC_POINT = {"fig3": "gc", "gcreg": "gc", **dict.fromkeys(FIG4_SWEEPS, "gc_last")}
GC_AT = {"gc": "at best smoothed test accuracy", "gc_last": "at matched training loss (the stop eval)"}
GC_AT_OTHER = {"gc": "at best smoothed test accuracy", "gc_last": "at the last eval"}
FIG3_TEXT = {
    "label_noise": "the fraction of statically corrupted training labels (replaced once, then memorized; "
    "not the paper's label noise in SGD)",
    "step_label_noise": "per-step label noise (each batch label redrawn with probability p at every step: "
    "label noise in SGD, the paper's ref. [15])",
}
GCREG_NOTE = (
    "holds by construction: the penalty is the batch's GC, so the optimizer lowers GC because it is told to; "
    "the row checks the penalty works, not a regularizer's side effect"
)
FIG2_NOTE = (
    "holds by construction: with variance-1/fan_in weights and zero biases each ReLU layer halves the "
    "second moment of its input (the 2^−L variance halving), so outputs shrink as 2^−L/2 and GC at init "
    "falls as 2^−L"
)


def _robust(h: Heuristic) -> Heuristic:
    """The robustness row of a GC claim: the same trend with GC read at the sweep's other point."""
    other = "gc_last" if h.y == "gc" else "gc"
    return replace(
        h,
        name=f"{h.name} [GC {GC_AT_OTHER[other]}]",
        y=other,
        claim=f"{h.claim} — robustness: GC read {GC_AT_OTHER[other]}",
        kind="toolkit",
        source=f"{h.source}; gclab robustness check of the measurement point",
    )


def heuristics() -> list[Heuristic]:
    rows = []
    for reg in FIG3_REGS:
        h = Heuristic(
            name=reg,
            sweep="fig3",
            x=reg,
            y=GC_POINT["fig3"],
            direction=DECREASES,
            claim=f"GC ({GC_AT['gc']}) decreases as {FIG3_TEXT.get(reg, reg + ' strength')} increases",
            source="GC paper §4, Fig. 3; SM C.5",
            spec="fig3:gc",
        )
        rows += [h, _robust(h)]
    h = Heuristic(
        name="gc_reg",
        sweep="gcreg",
        x="gc_reg",
        y=GC_POINT["gcreg"],
        direction=DECREASES,
        claim="GC decreases as the explicit GC penalty increases",
        source="GC paper SM C.4",
        spec="gcreg:gc",
        note=GCREG_NOTE,
    )
    rows += [
        h,
        _robust(h),
        Heuristic(
            name="gc_reg → test acc",
            sweep="gcreg",
            x="gc_reg",
            y="test_acc",
            direction=INCREASES,
            claim="test accuracy increases with the explicit GC penalty",
            log=False,
            source="GC paper SM C.4",
        ),
    ]
    for sweep, opt in FIG4_SWEEPS.items():
        src = "GC paper §5, Fig. 4" if sweep == "fig4" else "GC paper SM C.7–C.8"
        gc = GC_POINT[sweep]
        for x, fixed, direction, text in [
            ("lr", "batch_size", DECREASES, "higher learning rate gives lower GC"),
            ("batch_size", "lr", INCREASES, "larger batch size gives higher GC"),
        ]:
            h = Heuristic(
                name=f"{x} ({opt})",
                sweep=sweep,
                x=x,
                y=gc,
                direction=direction,
                claim=f"{text} ({opt}; GC {GC_AT[gc]})",
                fixed=fixed,
                source=src,
                spec=f"{sweep}:gc",
            )
            rows += [h, _robust(h)]
        for x, fixed, direction, text in [
            ("lr", "batch_size", INCREASES, "higher learning rate gives higher test accuracy"),
            ("batch_size", "lr", DECREASES, "smaller batch size gives higher test accuracy"),
        ]:
            rows.append(
                Heuristic(
                    name=f"{x} → test acc ({opt})",
                    sweep=sweep,
                    x=x,
                    y="test_acc",
                    direction=direction,
                    claim=f"{text} ({opt})",
                    log=False,
                    fixed=fixed,
                    source=src,
                    spec=f"{sweep}:test_acc",
                )
            )
    return rows


def fig2_heuristics(families: list[str]) -> list[Heuristic]:
    """The two fig2 claims for every init/activation family present and the pooled fit. The named
    schemes are the paper's (§3: the standard scheme; SM C.1: "a number of other common activation
    functions and initialization setups"), so each is a `paper` row; torch's `default` init (random
    biases) and the pooled fit are `toolkit` rows."""
    rows = []
    for name, y, text, src in [
        ("depth at init", "gc_first", "GC at initialization decreases with depth", "GC paper §3, Fig. 2 right"),
        (
            "depth → |output| at init",
            "abs_output",
            "network outputs at initialization shrink toward 0 with depth",
            "GC paper §3, Fig. 2 left",
        ),
    ]:
        for fam in [PAPER_FAMILY, POOLED, *sorted(set(families) - {PAPER_FAMILY})]:
            standard = fam == PAPER_FAMILY
            paper = fam != POOLED and not fam.startswith("default/")
            label = (
                ": the paper's standard scheme, zero biases"
                if standard
                else ": all families, family fixed effects"
                if fam == POOLED
                else ""
            )
            rows.append(
                Heuristic(
                    name=f"{name} [{fam}]",
                    sweep="fig2",
                    x="depth",
                    y=y,
                    direction=DECREASES,
                    claim=f"{text} ({fam}{label})",
                    source=src if standard else f"{src}; SM C.1" if paper else f"{src}; SM C.1 (breakdown by gclab)",
                    family=fam,
                    kind="paper" if paper else "toolkit",
                    note=FIG2_NOTE if standard else "",
                )
            )
    return rows
