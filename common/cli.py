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


def parser(prog: str, doc: str, epilog: str) -> argparse.ArgumentParser:
    """An ArgumentParser with defaults shown and examples in the epilog."""
    return argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                   epilog=epilog, formatter_class=HelpFormatter)
