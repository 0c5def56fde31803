"""The report in a real browser: headless Chromium (Debian's `chromium`), background networking
off, driven over the DevTools protocol on a pipe (stdlib only, no browser download).

Checks that the page renders with no console error and no network request beyond the file
itself, that every expected chart drew marks (the SVG renderer makes them DOM nodes), that the
interactive selectors exist and respond, and saves a full-page screenshot next to index.html.
Skipped, with the reason printed, where Chromium is missing — except in CI (CI=true), where
it fails instead.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gclab.analysis.report import render
from gclab.analysis.report.pngcheck import blankness

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for cand in CHROMIUM_CANDIDATES:
        path = cand if os.path.isabs(cand) else shutil.which(cand)
        if path and os.access(path, os.X_OK):
            return path
    return None


class Chromium:
    """Chromium with --remote-debugging-pipe: JSON messages, NUL-terminated, on fds 3 (in) and 4 (out)."""

    def __init__(self, exe: str, profile: str):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # Park the child's ends above 10 so dup2 onto 3/4 in the child never clobbers them.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def child_fds():
            os.dup2(hi_r, 3)  # dup2 clears close-on-exec: these two survive exec
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=child_fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(hi_r)
        os.close(hi_w)
        self._buf, self._id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect events for a while."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._next(deadline))
        except TimeoutError:
            pass

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from Chromium in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the pipe: " + self.stderr_tail())
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def stderr_tail(self) -> str:
        return (
            "(see stderr)"
            if self.proc.poll() is None
            else (self.proc.stderr.read() or b"")[-2000:].decode(errors="replace")
        )

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own process group (start_new_session)
            self.proc.wait(timeout=10)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        reason = "Chromium not found (install Debian's `chromium` package; .ci/run does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}: the browser test must run in CI")
        print(f"SKIP browser test: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return exe


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from gclab.planted.store import SWEEPS, write_planted_store

    root = tmp_path_factory.mktemp("report_browser")
    write_planted_store(
        root / "data", sweeps=SWEEPS, seeds=2, cadence={"steps": 200, "log_every": 10, "eval_every": 50}
    )
    # PNG/SVG export is covered by test_report.py; the browser only needs the page.
    return render(root / "data", root / "reports", strict=True, progress=False, figures=False)


# Marks are the children of Vega's role-mark groups (axes, legends and titles have other roles),
# counted only when they have geometry.
CHART_STATE_JS = r"""
(() => Array.from(document.querySelectorAll('div.chart')).map(el => {
  const marks = Array.from(el.querySelectorAll('g.role-mark > *')).filter(n =>
      (n.tagName === 'path' && (n.getAttribute('d') || '').length > 2) ||
      ['rect', 'circle', 'line', 'text', 'image'].includes(n.tagName) ||
      (n.tagName === 'g' && n.querySelector('path,rect,circle,line,text')));
  const box = el.getBoundingClientRect();
  return {name: el.dataset.figure, rendered: el.dataset.rendered || null, marks: marks.length,
          width: box.width, height: box.height, bindings: el.querySelectorAll('.vega-bind select').length};
}))()
"""


def _sibling(filename: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_gclab_{Path(filename).stem}", Path(__file__).with_name(filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate(browser, session, expr):
    res = browser.send(
        "Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}, session=session
    )
    if "exceptionDetails" in res:
        raise AssertionError(f"page script failed: {res['exceptionDetails']}")
    return res["result"].get("value")


def _console_warnings(events) -> list[str]:
    return [
        " ".join(str(a.get("value", "")) for a in ev["params"].get("args", []))
        for ev in events
        if ev.get("method") == "Runtime.consoleAPICalled" and ev["params"].get("type") == "warning"
    ]


def _console_errors(events) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(
                "console."
                + p["type"]
                + ": "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
    return out


FOREST_JS = r"""
(() => { const el = document.querySelector('#chart-claims_forest');
  const box = el.getBoundingClientRect();
  const fills = Array.from(el.querySelectorAll('g.role-mark path')).map(n => n.getAttribute('fill'))
      .filter(f => f && f !== 'none');
  return {x: box.x + window.scrollX, y: box.y + window.scrollY, width: box.width, height: box.height,
          dots: el.querySelectorAll('g.mark-symbol path').length, fills: Array.from(new Set(fills))}; })()
"""


def _check_forest(browser, session, path: Path) -> None:
    """The forest plot of the paper rows: one dot per paper row with an estimate and δ, coloured by verdict,
    and a screenshot of just that chart that is not blank."""
    from gclab.analysis.report.common import VERDICT_COLORS

    f = _evaluate(browser, session, FOREST_JS)
    assert f["width"] > 300 and f["height"] > 200 and f["dots"] >= 20, f
    assert set(f["fills"]) & set(VERDICT_COLORS.values()), f  # the dots carry verdict colours
    shot = browser.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {**{k: f[k] for k in ("x", "y", "width", "height")}, "scale": 1},
        },
        session=session,
        timeout=60,
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    facts = blankness(path)
    assert facts["n_colors"] > 20 and facts["modal_share"] < 0.97 and facts["std"] > 5, facts
    print(f"forest screenshot: {path} {facts}", file=sys.stderr)


def test_report_renders_in_headless_chromium(chromium, report):
    expected_figures = _sibling("test_report.py").expected_figures  # the charts the page must have
    index = Path(report)
    profile = tempfile.mkdtemp(prefix="gclab-chromium-")
    browser = Chromium(chromium, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1500, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": index.as_uri()}, session=session)
        deadline = time.monotonic() + 90
        while not _evaluate(browser, session, "document.body ? (document.body.dataset.chartsDone || '') : ''"):
            assert time.monotonic() < deadline, "charts did not finish rendering within 90 s"
            browser.pump(0.25)
        browser.pump(0.5)  # late console messages

        charts = _evaluate(browser, session, CHART_STATE_JS)
        by_name = {c["name"]: c for c in charts}
        assert sorted(by_name) == sorted(expected_figures())
        for name, c in by_name.items():
            assert c["rendered"] == "ok", f"{name} did not render: {c}"
            assert c["marks"] > 0 and c["width"] > 100 and c["height"] > 50, f"{name} drew nothing: {c}"

        # Interactivity: selectors bound to parameters (seed, init, sweep, batch size) exist and respond.
        selects = _evaluate(browser, session, "document.querySelectorAll('.vega-bind select').length")
        assert selects >= 6
        svg_of = "document.querySelector('#chart-fig5_width svg').outerHTML"
        before = _evaluate(browser, session, svg_of)
        _evaluate(
            browser,
            session,
            """(async () => {
            const sel = document.querySelector('#chart-fig5_width .vega-bind select');
            sel.selectedIndex = 1; sel.dispatchEvent(new Event('change'));
            await new Promise(r => setTimeout(r, 300)); })()""",
        )
        assert _evaluate(browser, session, svg_of) != before, "picking a seed in fig5 should trace its runs"

        errors = _console_errors(browser.events)
        assert not errors, "console errors:\n" + "\n".join(errors)
        warnings = _console_warnings(browser.events)
        assert not warnings, "Vega warnings (a chart spec is off):\n" + "\n".join(warnings)
        requests = [
            ev["params"]["request"]["url"] for ev in browser.events if ev.get("method") == "Network.requestWillBeSent"
        ]
        assert requests and all(u.startswith(("file:", "data:", "about:", "blob:")) for u in requests), requests

        height = _evaluate(browser, session, "document.documentElement.scrollHeight")
        shot = browser.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1500, "height": height, "scale": 1},
            },
            session=session,
            timeout=120,
        )
        path = index.parent / "screenshot.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        facts = blankness(path)
        assert facts["height"] >= 2000 and facts["n_colors"] > 50, facts
        print(f"screenshot: {path}", file=sys.stderr)
        _check_forest(browser, session, index.parent / "forest.png")
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
