"""`python -m gclab.planted.calibrate`: the JSON lists every claim test; bad input is a one-line error."""

import json

from gclab.planted.calibrate import CASES, NOT_CALIBRATED, TARGET_FPR, main


def test_writes_every_test_with_rates_and_intervals(tmp_path, capsys):
    assert (
        main(
            ["--out", str(tmp_path), "--null", "4", "--effect", "3", "--case", "igr", "--case", "bfd", "--workers", "1"]
        )
        == 0
    )
    cal = json.loads((tmp_path / "calibration.json").read_text())
    tested = [t for t in cal["tests"] if t.get("calibrated") is not False]
    # igr: β_h, β_b, h/b and its robustness row; bfd: 4 claims × 2 datasets
    assert len(tested) == 4 + 8 and {t["experiment"] for t in tested} == {"igr", "bfd"}
    for t in tested:
        assert t["n_null"] == 4 and t["n_effect"] == 3
        k = round(t["false_positive_rate"] * 4)
        lo, hi = t["fpr_ci"]
        assert 0 <= lo <= k / 4 <= hi <= 1
        # δ is the acceptance: where a case plants exactly δ, the power target is the power there
        power = t["power_at_delta"] if t["power_target_at"] == "delta" else t["power"]
        if t["false_positive_rate"] > TARGET_FPR or power < 0.8:
            assert t["meets_target"] is False
        assert t["power_target_at"] == ("delta" if "n_delta" in t else "planted effect")
    # Every igr/bfd row declares δ and both cases plant exactly δ: absent rate and power at δ per row, counted
    # over as many stores as the nulls, and in the target.
    for t in tested:
        assert t["n_delta"] == 4 and 0 <= t["absent_at_delta"] <= 1 and 0 <= t["power_at_delta"] <= 1
        lo, hi = t["absent_at_delta_ci"]
        assert lo <= t["absent_at_delta"] <= hi
        if t["absent_at_delta"] > TARGET_FPR:
            assert t["meets_target"] is False
        if t["power_at_delta"] < 0.8:  # the estimate of the seeds that would reach it is at least the seeds now
            assert t["seeds_for_power_at_delta"] is None or t["seeds_for_power_at_delta"] >= t["n_seeds"]
    assert {t["claim"] for t in cal["tests"] if t.get("calibrated") is False} == set(NOT_CALIBRATED)
    assert "calibration.json" in capsys.readouterr().out


def test_bad_counts_are_refused(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--null", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and not (tmp_path / "calibration.json").exists()


def test_heteroscedastic_fig5_null_is_a_case_and_planting_delta_hits_every_rows_delta():
    """The δ plants are the declared δ (analysis.deltas), read from the rows the analyses write."""
    from gclab.analysis.result import INSUFFICIENT
    from gclab.planted.calibrate import verdicts

    hetero = next(c for c in CASES if c.name == "fig5 heteroscedastic")
    assert hetero.null["fig5_noise_ratio"] >= 10 and hetero.null["u_curvature"] == 0 and not hetero.power_target
    igr_case = next(c for c in CASES if c.name == "igr")
    rows = verdicts(igr_case, igr_case.at_delta, 0)
    # β_h, β_b, the h/b contrast and its robustness row (GC at best test accuracy, same δ)
    assert rows.height == 4 and INSUFFICIENT not in rows["verdict"].to_list()
    assert rows["delta"].to_list() == [abs(igr_case.at_delta["igr_slope"])] * 4


def test_fig1_own_arc_case_plants_its_bound_and_delta_and_the_row_decides():
    """The null ripple puts the mean largest own-arc ratio at the row's bound 1.1, the δ ripple at 1.1 − δ
    (`own_arc_ratio` is the row's own statistic, fig1.own_ratios), and the case's stores carry the probe
    curves the row reads, so it is never `insufficient data` there."""
    from gclab.analysis import fig1
    from gclab.analysis.deltas import DELTAS
    from gclab.analysis.result import INSUFFICIENT
    from gclab.planted.calibrate import RIPPLE_AT_BOUND, RIPPLE_AT_DELTA, own_arc_ratio, verdicts

    spec = DELTAS["fig1:own_arc"]
    se = 0.0025 / 300**0.5  # the largest ratio's sd over runs is ≈ 0.002
    assert abs(own_arc_ratio(RIPPLE_AT_BOUND, n=300, seed=7) - spec.reference) < 5 * se
    assert abs(own_arc_ratio(RIPPLE_AT_DELTA, n=300, seed=7) - (spec.reference - spec.delta)) < 5 * se
    case = next(c for c in CASES if c.name == "fig1 own arc")
    for effects in (case.null, case.effect, case.at_delta):
        rows = verdicts(case, effects, 3)
        assert rows["claim"].to_list() == [fig1.OWN_CLAIM] and INSUFFICIENT not in rows["verdict"].to_list()


def test_seeds_for_target_follows_the_normal_approximation():
    """At the target power the seeds stay; at power α/2 (no effect) there is no estimate; a test at half the
    target's noncentrality needs 4× the seeds (noncentrality ∝ √seeds)."""
    from scipy import stats

    from gclab.analysis.result import ALPHA
    from gclab.planted.calibrate import TARGET_POWER, seeds_for_target

    assert seeds_for_target(TARGET_POWER, 5, 200) == 5
    assert seeds_for_target(ALPHA / 2, 5, 200) is None
    z = (stats.norm.ppf(TARGET_POWER) + stats.norm.ppf(1 - ALPHA / 2)) / 2
    half = float(stats.norm.cdf(z - stats.norm.ppf(1 - ALPHA / 2)))
    assert seeds_for_target(half, 5, 200) == 20
