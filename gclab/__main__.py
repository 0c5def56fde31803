"""`gclab COMMAND [options]` — the toolkit's one command (`gclab COMMAND --help` for each)."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# command → (module whose main() runs it, arguments put in front, help)
COMMANDS = {
    "collect": (
        "gclab.collect.__main__",
        [],
        "train a sweep's runs into the run store (--sweep NAME|PATH, --scale, --set)",
    ),
    "report": (
        "gclab.analysis.__main__",
        ["report"],
        "render reports/index.html and figures, then print the claims summary",
    ),
    "claims": ("gclab.analysis.__main__", ["claims"], "the paper's claims with verdicts (--json for scripts)"),
    "sql": ("gclab.analysis.__main__", ["sql"], 'one read-only SQL statement over the store (-q "SELECT ...")'),
    "bench": ("gclab.bench.__main__", [], "speed figures → reports/bench.json (needs the bench extra)"),
    "check": ("gclab.store.__main__", ["check"], "verify every run folder (--repair quarantines bad ones)"),
    "compact": ("gclab.store.__main__", ["compact"], "commit the inbox's runs to the store's table and compact it"),
    "migrate": ("gclab.store.__main__", ["migrate"], "turn a folder store into a table store (folders kept)"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="gclab",
        description="Geometric complexity of neural networks: collect runs, "
        "query them, test the paper's claims, render the report.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)  # each command's own parser answers --help
    args, rest = p.parse_known_args(argv)
    module, front, _ = COMMANDS[args.command]
    return import_module(module).main([*front, *rest])


if __name__ == "__main__":
    sys.exit(main())
