"""Every chart as SVG and PNG under <out>/figures/, named by experiment, via vl-convert.

Vega runs once per chart (spec → SVG); the PNG is rasterised from that SVG. No data is
fetched: `allowed_base_urls=[]` forbids any URL in a spec. Two worker threads (vl-convert
releases the GIL) share the 2 cores.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gclab.analysis.report.pngcheck import is_blank

PNG_SCALE = 1.5
# The figures the last render wrote, so the next one removes only its own stale files.
MANIFEST = ".gclab-figures.json"


def export_one(name: str, spec: dict, fig_dir: Path, vl_version: str) -> list[Path]:
    import vl_convert

    # No ARIA labels in static files: halves the SVG of dense charts and the time to draw it.
    svg = vl_convert.vegalite_to_svg(spec, vl_version=vl_version, allowed_base_urls=[], config={"aria": False})
    png = vl_convert.svg_to_png(svg, scale=PNG_SCALE)
    if is_blank(png):
        print(f"warning: figure {name} rendered blank (check its data)", file=sys.stderr)
    out = []
    for suffix, payload in ((".svg", svg.encode()), (".png", png)):
        path = fig_dir / f"{name}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        out.append(path)
    return out


def _manifest(fig_dir: Path) -> set[str]:
    try:
        names = json.loads((fig_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str) and "/" not in n} if isinstance(names, list) else set()


def export_all(specs: dict[str, dict], fig_dir: Path, vl_version: str, progress=None) -> list[Path]:
    """Write `<name>.svg` and `<name>.png` per spec. Figures an earlier render wrote (its manifest) and
    this one does not are removed; files this report never wrote are never touched."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    keep = {f"{n}{s}" for n in specs for s in (".svg", ".png")}
    earlier = _manifest(fig_dir)
    for name in sorted(earlier - keep):
        old = fig_dir / name
        if old.is_file() and not old.is_symlink():
            old.unlink()
    _write_manifest(fig_dir, keep)  # listed before written: an interrupted export is still ours
    written: list[Path] = []
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(export_one, n, s, fig_dir, vl_version) for n, s in specs.items()]
        for fut in futures:
            written += fut.result()
            if progress is not None:
                progress.update(1)
    return written


def _write_manifest(fig_dir: Path, names: set[str]) -> None:
    tmp = fig_dir / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(sorted(names)))
    os.replace(tmp, fig_dir / MANIFEST)
