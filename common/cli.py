"""argparse helpers shared by every command line: defaults shown, examples kept as written."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults (not for required options, None/False defaults or helps that state their
    own) and keep the description/epilog layout as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if action.required or action.default is None or action.default is False or "(default" in h:
            return h
        return super()._get_help_string(action)


def add_run_record_arg(p: argparse.ArgumentParser, default: str | None = None, default_text: str = "run.json") -> None:
    """``--run_record NAME``: write the run record as OUT/run.NAME.json (several runs, one folder)."""
    p.add_argument("--run_record", default=default, metavar="NAME",
                   help=f"name the run record run.NAME.json, for runs that share an output folder "
                        f"(default: {default_text})")


def parser(prog: str, doc: str, epilog: str) -> argparse.ArgumentParser:
    """An ArgumentParser with defaults shown and examples in the epilog."""
    return argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                   epilog=epilog, formatter_class=HelpFormatter)
