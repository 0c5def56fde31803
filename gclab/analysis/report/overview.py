"""What is in the store: runs per sweep and status, seeds, steps, wall time, size on disk."""

from __future__ import annotations

from pathlib import Path

from gclab.analysis.report.common import Section, esc, query
from gclab.experiments import EXPERIMENTS, reads
from gclab.store.db import scale_notes
from gclab.store.layout import runs_root
from gclab.store.schema import FILE_NAMES, MARKER_TABLE
from gclab.store.sweeps import PAPER_SWEEPS


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def store_size(data_dir) -> tuple[int, int, int]:
    """(bytes under runs/, run folders, incomplete run folders without run.parquet)."""
    root = runs_root(data_dir)
    total = folders = incomplete = 0
    if not root.exists():
        return 0, 0, 0
    for folder in root.glob("sweep=*/run_id=*"):
        folders += 1
        if not (folder / FILE_NAMES[MARKER_TABLE]).exists():
            incomplete += 1
        for f in folder.iterdir():
            try:
                total += f.stat().st_size
            except OSError:
                pass
    return total, folders, incomplete


def build(ctx) -> Section:
    sec = Section(
        id="overview", title="Store overview", question="What runs does this store hold, and did they finish?"
    )
    size, folders, incomplete = store_size(ctx.data_dir)
    df = query(
        ctx.con,
        """
        SELECT r.sweep, count(*) AS runs,
               count(*) FILTER (WHERE r.status = 'completed') AS completed,
               count(*) FILTER (WHERE r.status = 'diverged') AS diverged,
               count(*) FILTER (WHERE r.status = 'failed') AS failed,
               count(DISTINCT r.seed) AS seeds,
               string_agg(DISTINCT r.model, ', ') AS models, string_agg(DISTINCT r.dataset, ', ') AS datasets,
               string_agg(DISTINCT r.scale, ', ') AS scale,
               max(r.steps_done) AS max_steps, sum(r.wall_s) AS wall_s
        FROM runs r GROUP BY r.sweep ORDER BY r.sweep""",
    )
    n_runs = int(df["runs"].sum()) if df.height else 0
    db_file = Path(ctx.data_dir) / "runs.duckdb"
    facts = [
        f"<b>{n_runs}</b> complete runs in <b>{df.height}</b> sweeps",
        f"store size on disk: <b>{human_bytes(size)}</b> of Parquet under <code>{esc(runs_root(ctx.data_dir))}</code>"
        + (f" (+ {human_bytes(db_file.stat().st_size)} <code>runs.duckdb</code> views)" if db_file.exists() else ""),
    ]
    if incomplete:
        facts.append(
            f"<b>{incomplete}</b> of {folders} run folders are incomplete (no <code>run.parquet</code>: "
            "killed or still running); they are invisible here and re-run by the next <code>make collect</code>"
        )
    sec.html_blocks.append('<p class="note">' + "; ".join(facts) + ".</p>")
    if not df.height:
        sec.empty_note = "The store is empty — collect with `make demo`, `make collect SWEEP=<sweep>` or `make paper`."
    else:
        head = (
            "<tr><th>sweep</th><th>scale</th><th>runs</th><th>completed</th><th>diverged</th><th>failed</th><th>seeds</th>"
            "<th>model</th><th>dataset</th><th>steps (max)</th><th>wall time</th></tr>"
        )
        rows = "".join(
            f'<tr><td><a href="#{esc(_anchor(r["sweep"]))}">{esc(r["sweep"])}</a></td><td>{esc(r["scale"])}</td>'
            f"<td class=num>{r['runs']}</td><td class=num>{r['completed']}</td><td class=num>{r['diverged']}</td>"
            f"<td class=num>{r['failed']}</td><td class=num>{r['seeds']}</td><td>{esc(r['models'])}</td>"
            f"<td>{esc(r['datasets'])}</td><td class=num>{r['max_steps'] if r['max_steps'] is not None else '—'}</td>"
            f"<td class=num>{_dur(r['wall_s'])}</td></tr>"
            for r in df.to_dicts()
        )
        sec.html_blocks.append(f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>")
    missing, partial = collect_gaps(ctx.has)
    if missing and df.height:
        sec.caveats.append(
            "Experiments with no completed runs to read: " + ", ".join(missing) + " — `make paper` collects them all."
        )
    if partial and df.height:
        sec.caveats.append(
            "Experiments collected in part (their rows answer from the runs present): " + "; ".join(partial) + "."
        )
    sec.caveats.append("Only completed runs enter charts and statistics; diverged and failed runs are counted here.")
    sec.caveats += [note[0].upper() + note[1:] + "." for note in scale_notes(ctx.con)]
    return sec


def collect_gaps(has) -> tuple[list[str], list[str]]:
    """(experiments none of whose read sweeps has completed runs, "name (no `sweep`, …)" for those read in
    part). What an experiment reads is the registry's `reads` (igr answers from fig4's grid); only sweeps
    `gclab collect --paper` runs count (`store.sweeps.PAPER_SWEEPS`). `has(sweep)`: it has completed runs."""
    missing, partial = [], []
    for entry in EXPERIMENTS:
        wanted = [s for s in reads(entry.name) if s in PAPER_SWEEPS]
        absent = [s for s in wanted if not has(s)]
        if absent and len(absent) == len(wanted):
            missing.append(entry.name)
        elif absent:
            partial.append(f"{entry.name} (no " + ", ".join(f"`{s}`" for s in absent) + ")")
    return missing, partial


def _anchor(sweep: str) -> str:
    if sweep.startswith("fig4"):
        return "fig4"
    return {"gcreg": "fig3", "thm51": "theorem"}.get(sweep, sweep)


def _dur(s) -> str:
    if s is None:
        return "—"
    s = float(s)
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")
