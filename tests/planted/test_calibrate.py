"""`python -m gclab.planted.calibrate`: the JSON lists every claim test; bad input is a one-line error."""

import json

from gclab.planted.calibrate import NOT_CALIBRATED, TARGET_FPR, main


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
        assert 0 <= lo <= k / 4 <= hi <= 1 and t["meets_target"] == (
            t["false_positive_rate"] <= TARGET_FPR and t["power"] >= 0.8
        )
    assert {t["claim"] for t in cal["tests"] if t.get("calibrated") is False} == set(NOT_CALIBRATED)
    assert "calibration.json" in capsys.readouterr().out


def test_bad_counts_are_refused(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--null", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and not (tmp_path / "calibration.json").exists()
