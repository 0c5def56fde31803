"""The gclab report: one self-contained offline HTML page (Altair/Vega, JS inlined) with the
paper's figures rebuilt from the run store, each next to its claims' verdicts, plus every
figure as PNG and SVG under `<out>/figures/`.

One idea per module: `build` (orchestration), `page` (HTML), `export` (PNG/SVG), `common`
(shared pieces) and one module per section, which draws the tables its analysis module returns.
"""

from gclab.analysis.report.build import render

__all__ = ["render"]
