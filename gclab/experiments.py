"""The experiments registry: one entry per experiment, the one table every other list is derived from
(docs/EXPERIMENTS.md, "Adding an experiment").

Each entry names, by plain strings, its sweeps (`gclab/collect/sweeps/<sweep>.toml`), the dotted
modules of its analyses (each has `analyze(con) -> Analysis`) and of its report section (`build(ctx)
-> Section`), the planted-store knobs (`planted.store.EFFECTS` keys) that fake its effects, and the
Holm families of its paper rows (`analysis.deltas.DELTAS`). Derived from it: `store.sweeps`
PAPER_SWEEPS / DEMO_SWEEPS / FIG4_SWEEPS / TREND_SWEEPS / INTERPOLATING_SWEEPS, `analysis.claims`
MODULES and `analysis.report.build` SECTIONS.

Imports only the standard library, so `collect`, `store`, `analysis` and `planted` may all read it
without breaking the one-way data flow: modules are named here and imported by whoever runs them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One experiment of the catalog.

    name: its first sweep's name (claim rows' `experiment` is the sweep a row tests); with no sweeps, its rows'.
    sweeps: the sweeps it collects, in `gclab collect --paper` order; () reads every sweep's runs.
    analyses: dotted modules with `analyze(con)`; a module shared by several entries runs once.
    section: dotted report module with `build(ctx)`; entries may share one section (page order: first use).
    planted: `planted.store.EFFECTS` keys that plant this experiment's effects (shared knobs: SHARED_EFFECTS).
    families: Holm families of its paper rows (`analysis.deltas.DELTAS`); () when it has no paper δ rows.
    demo_order: position of its first sweep among `make demo`'s (fastest first); None: not in the demo.
    trend: its claims are a monotone trend in one swept hyperparameter (`analysis.trends`).
    interpolating: every run trains to zero training error, and only runs that reached it enter a claim.
    labels: display label per sweep, same order as `sweeps` (e.g. Fig. 4's optimizers); () for none.
    paper_scale_only: sweeps shipped for `--scale paper` alone, left out of the CPU `gclab collect --paper`
        (docs/EXPERIMENTS.md says why for each).
    reads: every sweep whose runs its analyses read, in order, when that is more than its own `sweeps`
        (igr fits fig4's lr × batch grid with its corners); () reads its own. Use `reads(name)`.
    """

    name: str
    sweeps: tuple[str, ...]
    analyses: tuple[str, ...]
    section: str
    planted: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    demo_order: int | None = None
    trend: bool = False
    interpolating: bool = False
    labels: tuple[str, ...] = ()
    paper_scale_only: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()


_A = "gclab.analysis."
_R = "gclab.analysis.report."

# Catalog order is collection order (PAPER_SWEEPS), analysis order (claims.MODULES) and page order (SECTIONS).
EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="fig1",
        sweeps=("fig1",),
        analyses=(_A + "fig1",),
        section=_R + "fig1",
        planted=("fig1_ripple", "fig1_gc_start", "fig1_fit", "fig1_line"),
        families=("gc:fig1",),
        demo_order=5,
    ),
    Experiment(
        name="fig2",
        sweeps=("fig2",),
        analyses=(_A + "trends",),
        section=_R + "fig2",
        planted=("output_shrink", "family_flip"),
        families=("gc:fig2",),
        demo_order=2,
        trend=True,
    ),
    Experiment(
        name="fig3",
        sweeps=("fig3",),
        analyses=(_A + "trends",),
        section=_R + "fig3",
        families=("gc:fig3",),
        demo_order=4,
        trend=True,
        interpolating=True,
    ),
    Experiment(
        name="fig4",
        sweeps=("fig4", "fig4_momentum", "fig4_adam"),
        analyses=(_A + "trends",),
        section=_R + "fig4",
        planted=("acc_slope", "diverged"),
        families=("gc:fig4", "gc:smC7", "gc:smC8"),
        demo_order=3,
        trend=True,
        interpolating=True,
        labels=("SGD", "SGD+momentum", "Adam"),
        paper_scale_only=("fig4_momentum",),
    ),
    Experiment(
        name="fig5",
        sweeps=("fig5",),
        analyses=(_A + "double_descent", _A + "ucurve"),
        section=_R + "fig5",
        planted=("fig5_peak", "u_curvature", "fig5_noise", "fig5_noise_ratio"),
        families=("gc:fig5",),
        demo_order=0,
    ),
    # The explicit GC penalty (GC paper, Supplementary C.4): drawn in Fig. 3's section.
    Experiment(
        name="gcreg",
        sweeps=("gcreg",),
        analyses=(_A + "trends",),
        section=_R + "fig3",
        planted=("acc_slope",),
        families=("gc:smC4",),
        demo_order=7,
        trend=True,
        interpolating=True,
    ),
    Experiment(
        name="thm51",
        sweeps=("thm51",),
        analyses=(_A + "theorem",),
        section=_R + "theorem",
        planted=("thm_slope_T", "thm_slope_grad", "thm_violations"),
        demo_order=1,
    ),
    Experiment(
        name="igr",
        sweeps=("igr",),
        analyses=(_A + "igr",),
        section=_R + "igr",
        planted=("igr_slope", "igr_b_extra", "eq6_breaks"),
        families=("gc:fig4",),
        interpolating=True,
        reads=("fig4", "igr"),  # one lr × batch grid: fig4's two axes and igr's corners (docs/EXPERIMENTS.md, igr)
    ),
    Experiment(
        name="bfd",
        sweeps=("bfd",),
        analyses=(_A + "bfd",),
        section=_R + "bfd",
        planted=("bfd_drop", "bfd_random_gap", "ffd_deficit"),
        families=("bfd:§6",),
        demo_order=6,
    ),
    # Generalization measures against GC, over every completed run of every sweep (no sweep of its own).
    Experiment(
        name="measures",
        sweeps=(),
        analyses=(_A + "measures",),
        section=_R + "measures",
        planted=("measure_corr",),
    ),
)

# Planted knobs that act on every sweep (noise, seed blocks, the generic trend and the stop rule).
SHARED_EFFECTS = ("trend_slope", "seed_noise", "acc_noise", "output_noise", "seed_offset", "unfitted")


def experiment(name: str) -> Experiment:
    """The entry called `name`; raises KeyError listing the valid names."""
    for entry in EXPERIMENTS:
        if entry.name == name:
            return entry
    raise KeyError(f"no experiment {name!r} in gclab/experiments.py; valid: {', '.join(e.name for e in EXPERIMENTS)}")


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def sweeps(*, where=None) -> tuple[str, ...]:
    """Every entry's sweeps in catalog order (only entries for which `where(entry)` is true, if given)."""
    return _unique(s for e in EXPERIMENTS if where is None or where(e) for s in e.sweeps)


def reads(name: str) -> tuple[str, ...]:
    """The sweeps whose runs experiment `name`'s analyses read: its `reads`, else its own sweeps."""
    entry = experiment(name)
    return entry.reads or entry.sweeps


def paper_scale_only() -> tuple[str, ...]:
    """Sweeps collected at `--scale paper` only (not by the CPU-scale `gclab collect --paper`)."""
    return _unique(s for e in EXPERIMENTS for s in e.paper_scale_only)


def demo_sweeps() -> tuple[str, ...]:
    """The first sweep of each entry in the demo, by `demo_order` (the demo runs one sweep per experiment)."""
    demo = sorted((e for e in EXPERIMENTS if e.demo_order is not None and e.sweeps), key=lambda e: e.demo_order or 0)
    return _unique(e.sweeps[0] for e in demo)


def analysis_modules() -> tuple[str, ...]:
    """Dotted analysis modules in catalog order, each once."""
    return _unique(m for e in EXPERIMENTS for m in e.analyses)


def section_modules() -> tuple[str, ...]:
    """Dotted report-section modules of the experiments in catalog order, each once."""
    return _unique(e.section for e in EXPERIMENTS)
