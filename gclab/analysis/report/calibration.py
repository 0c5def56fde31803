""" "How far to trust these verdicts": the calibration of every claim test (`make calibrate`,
which writes `<out>/calibration.json`), one row per test: false-positive rate with its 95%
Clopper–Pearson CI over null planted stores, power at the planted effect it names, and where the
store can plant an effect of exactly the row's δ: how often the row is wrongly called absent there
and its power at δ (then the power target: δ is the smallest effect the row must find)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from gclab.analysis.report.common import Section, esc

TITLE = "How far to trust these verdicts"
FILE = "calibration.json"


def _pct(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _effects(fx: dict) -> str:
    return ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}" for k, v in fx.items())


def _at_delta(t: dict) -> str:
    """Absent rate and power on stores planting exactly δ (— where the case cannot plant δ)."""
    if "n_delta" not in t:
        return '<td class="num">—</td><td class="num">—</td>'
    return (
        f'<td class="num">{_pct(t["absent_at_delta"])} of {t["n_delta"]}</td>'
        f'<td class="num">{_pct(t["power_at_delta"])}{_seeds(t)}</td>'
    )


def _seeds(t: dict) -> str:
    n = t.get("seeds_for_power_at_delta")
    return "" if t["power_at_delta"] >= 0.8 or n is None else f" (≈ {n} seeds for 80%)"


def table_html(cal: dict) -> str:
    head = (
        "<tr><th>claim</th><th>kind</th><th>false positives (supported on a null)</th><th>95% CI</th>"
        "<th>contradicted on a null</th><th>power</th><th>planted effect</th><th>absent at an effect of δ</th>"
        "<th>power at δ</th><th>meets target</th></tr>"
    )
    rows = []
    for t in cal["tests"]:
        if t.get("calibrated") is False:
            rows.append(
                f'<tr><td>{esc(t["claim"])}</td><td colspan="9" class="note">not calibrated: {esc(t["why"])}</td></tr>'
            )
            continue
        lo, hi = t["fpr_ci"]
        ok = '<span class="verdict v-good">yes</span>' if t["meets_target"] else '<span class="verdict v-bad">no</span>'
        rows.append(
            f"<tr><td>{esc(t['claim'])}</td><td>{esc(t['kind'])}</td>"
            f'<td class="num">{_pct(t["false_positive_rate"])} of {t["n_null"]}</td>'
            f'<td class="num">[{_pct(lo)}, {_pct(hi)}]</td>'
            f'<td class="num">{_pct(t["contradicted_rate_null"])}</td>'
            f'<td class="num">{_pct(t["power"])} of {t["n_effect"]}'
            f"{'' if t.get('power_target', True) else ' (shown, no target)'}</td>"
            f'<td class="stat">{esc(_effects(t["planted_effects"]))}</td>'
            f"{_at_delta(t)}<td>{ok}</td></tr>"
        )
    return f'<table class="claims calibration"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def build(ctx) -> Section:
    sec = Section(
        id="calibration",
        title=TITLE,
        question="How often would each test call a claim supported when the data hold no effect, "
        "and how often does it find an effect of a stated size?",
    )
    path = Path(getattr(ctx, "out_dir", ".")) / FILE
    if not path.exists():
        sec.empty_note = f"No calibration yet — run <code>make calibrate</code> (writes {esc(FILE)} next to this page)."
        return sec
    cal = json.loads(path.read_text())
    n_bad = sum(1 for t in cal["tests"] if t.get("meets_target") is False)
    sec.html_blocks.append(
        f'<p class="summary">Target: false-positive rate ≤ {_pct(cal["target_fpr"])} (α = {cal["alpha"]:g} plus 0.02), '
        f"power ≥ {_pct(cal['target_power'])} at an effect of exactly δ (at the planted effect where a store "
        "cannot plant δ), and `absent` at an effect of exactly δ in ≤ "
        f"{_pct(cal['target_fpr'])} of stores; {n_bad} test(s) miss it. {cal['n_null']} null stores and "
        f"{cal['n_effect']} planted-effect stores per test.</p>" + table_html(cal)
    )
    sec.caveats += [
        "Planted stores have the shipped sweeps' grids, seeds and columns (gclab/collect/sweeps/*.toml); only the "
        "end-of-training values are hand-made, with a per-seed block effect and run-level noise.",
        "Rates are per test before Holm's correction; the corrected paper rows are stricter still.",
        "Power is for the named planted effect (or δ) on these synthetic stores, with their noise; real data's "
        "noise may be smaller or larger (each claims row's seeds_needed uses the variance observed). The seeds "
        "for 80% at δ are a normal-approximation estimate from the power observed.",
    ]
    return sec
