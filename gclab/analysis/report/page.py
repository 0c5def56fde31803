"""HTML assembly: one self-contained file, the Vega/Vega-Lite/Vega-Embed bundle inlined once.

Charts are embedded as JSON specs in `<script type="application/json">` blocks and drawn by
vega-embed with the SVG renderer (marks are DOM nodes, which the browser test counts). No
`<script src>`, no `<link>`, no web fonts: the page never touches the network.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime

import altair as alt

from gclab.analysis.report.common import Section, esc, md_code

EMBED_OPTIONS = {"renderer": "svg", "actions": False}
NAV = {
    "overview": "Overview",
    "claims": "Claims",
    "calibration": "Trust",
    "demo": "Training runs",
    "fig1": "Fig. 1",
    "fig2": "Fig. 2",
    "fig3": "Fig. 3",
    "fig4": "Fig. 4",
    "fig5": "Fig. 5",
    "theorem": "Theorem 5.1",
    "igr": "IGR",
    "bfd": "Functional dimension",
    "measures": "Measures",
}


def vl_version() -> str:
    """The Vega-Lite version Altair writes specs for, in vl-convert's spelling (e.g. '6.4')."""
    import vl_convert

    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vl_convert.get_vegalite_versions() else vl_convert.get_vegalite_versions()[-1]


@functools.lru_cache(maxsize=1)
def js_bundle() -> str:
    """vega, vega-lite and vega-embed with all dependencies, as one classic script (≈0.9 MB)."""
    import vl_convert

    return _script_safe(vl_convert.javascript_bundle(vl_version=vl_version()))


def _script_safe(text: str) -> str:
    """JavaScript that cannot close the <script> element it sits in (the bundle has no such
    sequence today; `<\\/script` means the same in strings and regex literals)."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.I)


def _json_safe(text: str) -> str:
    """JSON inside <script type="application/json">: `<\\/` and `\\u003c!--` are the same JSON."""
    return text.replace("</", "<\\/").replace("<!--", "\\u003c!--")


CSS = """
:root { --fg:#1d2330; --muted:#5d6677; --line:#dde1e8; --bg:#fafbfc; --accent:#2f6fb3; }
* { box-sizing: border-box; }
body { font-family: "Liberation Sans", "DejaVu Sans", Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fff; line-height: 1.45; font-size: 15px; }
header { padding: 18px 32px 10px; border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 2px 0; color: var(--muted); font-size: 13px; }
nav { margin-top: 8px; font-size: 13px; display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
main { padding: 0 32px 40px; max-width: 1800px; }
section { border-bottom: 1px solid var(--line); padding: 18px 0 22px; }
section h2 { margin: 0 0 4px; font-size: 20px; }
.question { margin: 0 0 12px; color: var(--muted); font-style: italic; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.charts { flex: 0 1 auto; min-width: 0; max-width: 100%; overflow-x: auto; display: flex;
          flex-direction: column; gap: 14px; }
figure { margin: 0; }
.charts > table, .charts > p { align-self: flex-start; }
figcaption { font-size: 12.5px; color: var(--muted); max-width: 900px; margin-top: 2px; }
aside.verdicts { flex: 1 1 380px; max-width: 620px; min-width: 300px; }
details { font-size: 11.5px; color: var(--muted); }
summary { cursor: pointer; }
td.stat { font-size: 11.5px; color: var(--muted); max-width: 520px; }
aside.verdicts h3 { font-size: 14px; margin: 0 0 6px; }
.note { background: #f3f5f8; border-left: 3px solid #9aa5b5; padding: 6px 10px; margin: 8px 0; font-size: 13.5px; }
.missing { background: #fff8e6; border-left-color: #d9a400; }
.caveats { font-size: 13px; color: var(--muted); margin: 10px 0 0; padding-left: 18px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 4px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.verdict { font-weight: 600; padding: 1px 6px; border-radius: 3px; white-space: nowrap; }
.v-good { background: #dff3e3; color: #1d6b2e; }
.v-bad { background: #fbe1e1; color: #9b1c1c; }
.v-meh { background: #eef0f3; color: #4a5363; }
.v-absent { background: #e1ecfb; color: #0d47a1; }
code { background: #eef0f3; padding: 0 3px; border-radius: 3px; font-size: 90%; }
.chart-failed { color: #9b1c1c; font-weight: 600; }
"""

EMBED_JS = """
(function () {
  const opts = %s;
  const blocks = document.querySelectorAll('script[type="application/json"][data-chart]');
  const jobs = [];
  for (const block of blocks) {
    const el = document.getElementById(block.dataset.chart);
    const job = vegaEmbed(el, JSON.parse(block.textContent), opts)
      .then(function () { el.dataset.rendered = "ok"; })
      .catch(function (err) {
        el.dataset.rendered = "error";
        el.innerHTML = '<p class="chart-failed">This chart failed to render: ' + String(err) + '</p>';
        console.error("chart " + block.dataset.chart + " failed:", err);
      });
    jobs.push(job);
  }
  Promise.allSettled(jobs).then(function () { document.body.dataset.chartsDone = String(jobs.length); });
})();
"""


def section_html(sec: Section, specs: dict[str, dict], verdicts_html: str) -> str:
    parts = [
        f'<section id="{esc(sec.id)}" data-section="{esc(sec.id)}">',
        f"<h2>{esc(sec.title)}</h2>",
        f'<p class="question">{md_code(sec.question)}</p>',
    ]
    if sec.empty_note:
        parts.append(f'<p class="note missing">{md_code(sec.empty_note)}</p>')
    charts = []
    for fig in sec.figures:
        chart_id = f"chart-{fig.name}"
        spec = json.dumps(specs[fig.name], separators=(",", ":"), allow_nan=False)
        charts.append(
            f'<figure><div id="{chart_id}" class="chart" data-figure="{esc(fig.name)}"></div>'
            f'<script type="application/json" data-chart="{chart_id}">{_json_safe(spec)}</script>'
            + (f"<figcaption>{md_code(fig.caption)}</figcaption>" if fig.caption else "")
            + "</figure>"
        )
    charts += sec.html_blocks
    if charts or verdicts_html:
        parts.append(
            '<div class="row"><div class="charts">'
            + "".join(charts)
            + "</div>"
            + (f'<aside class="verdicts">{verdicts_html}</aside>' if verdicts_html else "")
            + "</div>"
        )
    if sec.caveats:
        parts.append('<ul class="caveats">' + "".join(f"<li>{md_code(c)}</li>" for c in sec.caveats) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def page_html(sections_html: list[tuple[str, str]], *, data_dir: str, warnings: list[str]) -> str:
    """The whole document. `sections_html` is [(anchor id, title)] paired with rendered HTML."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(
        f'<a href="#{esc(sid)}" title="{esc(title)}">{esc(NAV.get(sid, title))}</a>'
        for (sid, title), _ in sections_html
    )
    warn = "".join(f'<p class="note">{md_code(w)}</p>' for w in warnings)
    body = "\n".join(h for _, h in sections_html)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gclab report</title>
<style>{CSS}</style>
<script>{js_bundle()}</script>
</head>
<body>
<header>
<h1>gclab — geometric complexity report</h1>
<p>Reproduces Figs. 1–5 of “Why neural networks find simple solutions: the many regularizers of geometric
complexity” from the run store <code>{esc(data_dir)}</code>, next to the statistical verdict for each claim.
Generated {now}. Self-contained: opens offline.</p>
<nav>{nav}</nav>
</header>
<main>
{warn}
{body}
</main>
<script>{EMBED_JS % json.dumps(EMBED_OPTIONS)}</script>
</body>
</html>
"""
