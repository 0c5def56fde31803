"""The report renderer on real stores: a planted store with every sweep, a partial store, an
empty store, and a hand-made run whose "GC of a run" is known. Browser checks live in
test_report_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gclab.analysis.report import render
from gclab.analysis.report.pngcheck import blankness, is_blank

# Training curves long enough to draw (collection cadence of the sweeps is shortened).
CURVES = {"steps": 200, "log_every": 10, "eval_every": 50}
SECTIONS = (
    "overview",
    "claims",
    "calibration",
    "demo",
    "fig1",
    "fig2",
    "fig3",
    "fig4",
    "fig5",
    "theorem",
    "igr",
    "bfd",
    "measures",
)
FIGURES = (
    "claims_forest",
    "demo_test_loss",
    "fig1_function",
    "fig1_arclength_gc",
    "fig2_diagonal",
    "fig2_gc_depth",
    "fig2_families",
    "fig3_regularizers",
    "fig4_lr",
    "fig4_batch",
    "fig4_curves",
    "fig5_width",
    "fig5_ucurve",
    "theorem_bound",
    "theorem_tightness",
    "igr_terms",
    "igr_lr_batch",
    "bfd_over_training",
)
# Experiment section → the sweep its collect note names.
EXPERIMENTS = {
    "fig1": "fig1",
    "fig2": "fig2",
    "fig3": "fig3",
    "fig4": "fig4",
    "fig5": "fig5",
    "theorem": "thm51",
    "igr": "igr",
    "bfd": "bfd",
}


def expected_figures() -> tuple[str, ...]:
    return FIGURES + ("measures_ranking",)


def missing_note(sweep: str) -> str:
    return f"No runs yet — collect with <code>make collect SWEEP={sweep}</code>."


def section_html(doc: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}" data-section="{sid}">(.*?)</section>', doc, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def assert_offline(doc: str) -> None:
    """No tag or CSS rule that would fetch anything: the page must open offline."""
    assert not re.search(r"<script[^>]*\ssrc\s*=", doc, re.I), "a <script src=...> would fetch JS"
    assert not re.search(r"<link\b", doc, re.I), "a <link> would fetch CSS or fonts"
    assert not re.search(r"<(img|iframe|embed|object|source)\b[^>]*\s(src|data)\s*=\s*[\"']?https?:", doc, re.I)
    assert not re.search(r"@import|url\(\s*[\"']?https?:", doc, re.I), "CSS must not load remote resources"
    assert not re.search(r"\"url\"\s*:\s*\"https?:", doc), "a chart spec loads data from the network"
    # The Vega bundle is inlined exactly once.
    assert doc.count("vegaEmbed") >= 1 and len(re.findall(r"<script>", doc)) == 2


def test_full_report_page_sections_and_figures(tmp_path):
    """One render of a store with every sweep (rendering is the slow part, so all checks share it)."""
    from gclab.planted.store import SWEEPS, write_planted_store

    write_planted_store(tmp_path / "data", sweeps=SWEEPS, seeds=2, cadence=CURVES)
    index = render(tmp_path / "data", tmp_path / "reports", strict=True, progress=False)
    doc = index.read_text(encoding="utf-8")
    assert index.name == "index.html" and index.exists()
    assert_offline(doc)
    for sid in SECTIONS:
        body = section_html(doc, sid)
        assert "failed to render" not in body
    for name in EXPERIMENTS.values():
        assert missing_note(name) not in doc
    figures = re.findall(r'data-figure="([^"]+)"', doc)
    assert sorted(figures) == sorted(expected_figures())
    # Every embedded chart spec parses and carries its data inline.
    specs = re.findall(r'<script type="application/json" data-chart="[^"]+">(.*?)</script>', doc, re.S)
    assert len(specs) == len(figures)
    for raw in specs:
        spec = json.loads(raw.replace("<\\/", "</"))
        assert spec["$schema"].endswith(".json") and spec.get("datasets")
    assert index.stat().st_size < 5_000_000

    # Each experiment section answers a question and shows its verdicts and caveats.
    for sid in ("fig1", "fig2", "fig3", "fig4", "fig5", "theorem", "igr", "bfd"):
        body = section_html(doc, sid)
        assert re.search(r'<p class="question">[^<]{20,}\?</p>', body), f"{sid} lacks its question"
        assert '<aside class="verdicts">' in body and "Claim verdicts" in body
        assert '<ul class="caveats">' in body
    assert "eval mode" in section_html(doc, "theorem") and "no theorem rows" in section_html(doc, "theorem")
    claims = section_html(doc, "claims")
    assert re.search(r'class="verdict v-(good|bad|meh)"', claims)
    assert re.findall(r'<h3 data-kind="(\w+)">', claims) == ["paper", "condition", "check", "literature", "toolkit"]
    assert "Holm" in claims and re.search(r"\d+ paper claims: ", claims)
    assert "make calibrate" in section_html(doc, "calibration")  # no calibration.json yet

    # Every figure is also a non-blank PNG and an SVG under figures/.
    fig_dir = index.parent / "figures"
    names = expected_figures()
    assert sorted(p.stem for p in fig_dir.glob("*.png")) == sorted(names)
    for name in names:
        png, svg = fig_dir / f"{name}.png", fig_dir / f"{name}.svg"
        facts = blankness(png)
        assert not is_blank(png), f"{png.name} is blank: {facts}"
        assert facts["width"] > 200 and facts["height"] > 100 and facts["n_colors"] > 10
        text = svg.read_text()
        assert text.lstrip().startswith("<svg") and text.count("<path") > 5


def test_missing_experiments_get_a_collect_note(tmp_path):
    from gclab.planted.store import write_planted_store

    # thm51 and fig5: two of the demo's sweeps (the theorem section reads the shipped sweeps only).
    write_planted_store(tmp_path / "data", sweeps=("thm51", "fig5"), seeds=2, cadence=CURVES)
    doc = render(tmp_path / "data", tmp_path / "out", strict=True, progress=False, figures=False).read_text()
    assert_offline(doc)
    for sid, sweep in EXPERIMENTS.items():
        if sid == "theorem":
            continue  # thm51 is collected, so the theorem section draws
        if sid == "fig5":
            assert missing_note(sweep) not in section_html(doc, sid)
            assert 'data-figure="fig5_width"' in section_html(doc, sid)
        else:
            body = section_html(doc, sid)
            assert missing_note(sweep) in body, f"{sid} lacks its collect note"
            assert "data-figure" not in body
    assert 'data-figure="demo_test_loss"' in doc and 'data-figure="theorem_bound"' in doc


def test_empty_store_renders_notes_and_no_charts(tmp_path):
    index = render(tmp_path / "nothing_here", tmp_path / "out", strict=True, progress=False)
    doc = index.read_text()
    assert_offline(doc)
    for sid in SECTIONS:
        section_html(doc, sid)
    for sid, sweep in EXPERIMENTS.items():
        assert missing_note(sweep) in section_html(doc, sid)
    assert "The store is empty" in doc and "data-figure" not in doc
    assert not list((tmp_path / "out").rglob("*.png"))


def test_cli_report_prints_the_path(tmp_path, capsys):
    from gclab.analysis.__main__ import main

    (tmp_path / "d").mkdir()  # an empty store; a store path that does not exist is refused (test_faults_surfaces)
    assert main(["report", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out == f"report: {tmp_path / 'r' / 'index.html'}" and Path(out.split(": ", 1)[1]).exists()


def _run(folder_root, sweep, run_id, evals, seed=0):
    from gclab.store.layout import RunFolder

    folder = RunFolder(folder_root, sweep, run_id)
    folder.start()
    folder.write("evals", evals)
    folder.finish({"run_id": run_id, "sweep": sweep, "status": "completed", "seed": seed, "width": 8, "lr": 0.1})


def test_gc_of_a_run_is_train_gc_at_best_smoothed_test_acc_earliest_tie(tmp_path):
    """docs/EXPERIMENTS.md: train-split GC at the eval step with the highest test acc averaged with its
    neighbouring evals (ties: earliest); one lucky eval does not place the point."""
    from gclab.analysis.run_summary import GC_AT_BEST_SQL, run_summary
    from gclab.store.db import connect, query

    steps = [0, 50, 100, 150, 200, 250]
    # raw argmax: the spike at 50; smoothed (3 evals, 2 at the ends): 0.5, 0.5, 0.75, 0.737, 0.85, 0.85 → 200
    test_acc = [0.1, 0.9, 0.5, 0.85, 0.86, 0.84]
    train_gc = [1.0, 2.0, 3.0, 4.0, 7.0, 9.0]
    evals = {
        "run_id": ["a"] * 12,
        "step": steps * 2,
        "split": ["test"] * 6 + ["train"] * 6,
        "loss": [2.0, 1.0, 0.5, 0.6, 0.6, 0.6] + [2.0, 0.9, 0.3, 0.2, 0.2, 0.2],
        "acc": test_acc + [0.2, 0.8, 0.95, 0.99, 0.99, 0.99],
        "gc": [5.0] * 6 + train_gc,
    }
    _run(tmp_path, "fig5", "a", evals)
    with connect(tmp_path) as con:
        row = run_summary(con).row(0, named=True)
        focused = query(con, GC_AT_BEST_SQL).row(0, named=True)
    assert row["best_step"] == 200 and row["gc"] == 7.0 and row["best_test_acc"] == 0.86
    assert focused == {"run_id": "a", "best_step": 200, "gc": 7.0}
    assert row["last_step"] == 250 and row["test_loss"] == 0.6 and row["train_loss"] == 0.2 and row["gc_last"] == 9.0


def test_curves_are_binned_per_run_in_sql(tmp_path):
    """A run with 1,000 logged steps reaches the chart as at most `points` binned rows."""
    from gclab.analysis.curves import binned_curves
    from gclab.store.db import connect
    from gclab.store.layout import RunFolder

    folder = RunFolder(tmp_path, "demo", "b")
    folder.start()
    n = 1000
    folder.write(
        "steps", {"run_id": ["b"] * n, "step": list(range(0, 10 * n, 10)), "train_loss": [float(i) for i in range(n)]}
    )
    folder.finish({"run_id": "b", "sweep": "demo", "status": "completed", "seed": 0})
    with connect(tmp_path) as con:
        curves = binned_curves(con, "steps", {"loss": "x.train_loss"}, points=50)
    assert curves.height == 50
    assert curves["step"].is_sorted() and curves["loss"].is_sorted()
    assert abs(curves["loss"].mean() - (n - 1) / 2) < 1e-9  # equal-width bins keep the mean


def test_a_truncated_file_is_named_and_the_report_still_renders(tmp_path, capfd):
    from gclab.planted.store import write_planted_store

    write_planted_store(tmp_path / "data", sweeps=("demo",), seeds=2, cadence=CURVES)
    victim = sorted((tmp_path / "data" / "runs").glob("sweep=demo/run_id=*/evals.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    doc = render(tmp_path / "data", tmp_path / "out", strict=True, progress=False, figures=False).read_text()
    assert str(victim) in capfd.readouterr().err
    assert 'data-figure="demo_test_loss"' in section_html(doc, "demo")
    assert "failed to render" not in section_html(doc, "demo")


def test_calibration_section_shows_every_test(tmp_path):
    """`make calibrate`'s JSON (a tiny run of two groups here) becomes one table row per test."""
    from gclab.analysis.report.common import esc
    from gclab.planted.calibrate import CASES, FILE, calibrate

    out = tmp_path / "out"
    out.mkdir()
    cal = calibrate(3, 3, [c for c in CASES if c.name in ("igr", "fig1")], log=lambda m: None)
    (out / FILE).write_text(json.dumps(cal))
    doc = render(tmp_path / "nothing", out, strict=True, progress=False, figures=False).read_text()
    body = section_html(doc, "calibration")
    assert "How far to trust" in doc and body.count("<tr>") == 1 + len(cal["tests"])
    for t in cal["tests"]:
        assert esc(t["claim"]) in body
    assert "of 3" in body and "not calibrated" in body


def test_each_verdict_gets_its_badge():
    """Verdicts are the fixed set `VERDICTS`: each maps to one badge class, nothing is guessed from the text."""
    from gclab.analysis.report.claims_table import claims_html
    from gclab.analysis.result import VERDICTS, claim, claims_frame

    rows = [
        claim(f"claim {v}", "fig5", "test", v, kind="paper", source="the GC paper", family="gc:fig5") for v in VERDICTS
    ]
    html = claims_html(claims_frame(rows))
    badges = re.findall(r'<span class="verdict (v-\w+)">([^<]+)</span>', html)
    assert badges == [
        ("v-good", "supported"),
        ("v-bad", "contradicted"),
        ("v-absent", "absent"),
        ("v-meh", "inconclusive"),
        ("v-meh", "insufficient data"),
    ]


def test_a_failing_analysis_is_its_claims_row_and_its_section_says_so(tmp_path, monkeypatch):
    """No fallback: the module's exception is one claims row, and the section drawing its tables fails loudly."""
    import types

    from gclab.analysis import claims
    from gclab.planted.store import write_planted_store

    def analyze(con):
        raise ZeroDivisionError("planted failure")

    monkeypatch.setitem(claims.MODULES, "double_descent", types.SimpleNamespace(analyze=analyze))
    write_planted_store(tmp_path / "data", sweeps=("fig5",), seeds=2, cadence=CURVES)
    doc = render(tmp_path / "data", tmp_path / "out", progress=False, figures=False).read_text()
    assert "ZeroDivisionError: planted failure" in section_html(doc, "claims")
    fig5 = section_html(doc, "fig5")
    assert "failed to render" in fig5 and "analysis.double_descent has no table" in fig5
    assert "data-figure" not in fig5


def test_forest_plot_standardizes_paper_rows_by_their_delta_around_their_reference():
    from gclab.analysis.report.forest import forest_chart, standardized
    from gclab.analysis.result import claim, claims_frame

    rows = [
        claim(
            "slope",
            "fig4",
            "s",
            "supported",
            kind="paper",
            source="x",
            family="gc:fig4",
            delta=0.02,
            value=-0.05,
            ci=(-0.07, -0.03),
        ),
        claim(
            "ratio",
            "fig1",
            "s",
            "absent",
            kind="paper",
            source="x",
            family="gc:fig1",
            delta=0.1,
            reference=1.0,
            value=1.04,
            ci=(0.98, 1.09),
        ),
        claim("no delta", "fig4", "s", "supported", kind="paper", source="x", family="gc:fig4", value=3.0),
        claim("toolkit", "measures", "s", "supported", kind="toolkit", source="x", delta=1.0, value=3.0),
    ]
    df = standardized(claims_frame(rows))
    assert df["claim"].to_list() == ["slope", "ratio"] and df["label"][0] == "gc:fig4: slope"
    # By hand: −0.05/0.02 = −2.5, CI [−3.5, −1.5]; (1.04 − 1)/0.1 = 0.4, CI [−0.2, 0.9].
    for got, want in zip(df.select("std", "std_lo", "std_hi").rows(), [(-2.5, -3.5, -1.5), (0.4, -0.2, 0.9)]):
        assert got == pytest.approx(want, abs=1e-12)
    assert forest_chart(claims_frame(rows[2:])) is None  # nothing with both a value and δ: no chart
