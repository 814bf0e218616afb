"""argparse helpers shared by every command line: defaults shown, examples kept as written."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description/epilog layout as written."""


def parser(prog: str, doc: str, epilog: str) -> argparse.ArgumentParser:
    """An ArgumentParser with defaults shown and examples in the epilog."""
    return argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                   epilog=epilog, formatter_class=HelpFormatter)
