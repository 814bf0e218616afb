"""Every command line follows one option style: underscores (old spellings only as hidden
aliases), one meaning per short flag across all CLIs, help on every option, real defaults shown."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("Deep3DFaceRecon_pytorch", "preprocess", "vico", "PIRender", "evaluation", "common", "pipeline")
SKIP: set[str] = set()


def discover_clis() -> list[str]:
    """Every ``python -m MODULE`` of the stages: modules with a main() run under ``__main__``."""
    found = []
    for stage in STAGES:
        for p in sorted((REPO / stage).rglob("*.py")):
            text = p.read_text(encoding="utf-8", errors="replace")
            if "__name__ == \"__main__\"" in text and "def main(" in text:
                found.append(".".join(p.relative_to(REPO).with_suffix("").parts))
    return [m for m in found if m not in SKIP]


CLIS = discover_clis()
# short flags with a fixed meaning: -v is the original's --video_folder (preprocess.convert), never --verbose
SHORT_FLAGS = {"-h": "--help", "-v": "--video_folder"}


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser MODULE's main() builds (captured at parse_args, before any work)."""
    def capture(self, *a, **k):
        raise _Captured(self)

    mod = importlib.import_module(module)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as e:
        mod.main([])
    monkeypatch.undo()
    return e.value.parser


def _walk(p: argparse.ArgumentParser, name: str):
    yield name, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sub in a.choices.items():
                yield from _walk(sub, f"{name} {sub_name}")


@pytest.fixture(scope="module")
def parsers():
    mp = pytest.MonkeyPatch()
    try:
        return [(n, p) for m in CLIS for n, p in _walk(parser_of(m, mp), m)]
    finally:
        mp.undo()


@pytest.mark.slow  # imports every stage (about 10 s alone; shared with other tests in a full run)
def test_option_rules(parsers):
    problems, shorts = [], {}
    for name, p in parsers:
        fmt = p._get_formatter()
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            hidden = a.help == argparse.SUPPRESS
            label = f"{name} {'/'.join(a.option_strings) or a.dest}"
            if not hidden and not (a.help or "").strip():
                problems.append(f"{label}: no help")
            for s in a.option_strings:
                if s.startswith("--") and "-" in s[2:] and not hidden:
                    problems.append(f"{label}: {s} is spelt with '-' (use '_'; keep the old one as a hidden alias)")
                if not s.startswith("--"):
                    longs = [o for o in a.option_strings if o.startswith("--")]
                    shorts.setdefault(s, set()).add(longs[0] if longs else a.dest)
            shows_default = (a.required or a.default in (None, False, argparse.SUPPRESS) or hidden
                             or not a.option_strings or "default" in (fmt._get_help_string(a) or "").lower())
            if not shows_default:
                problems.append(f"{label}: --help does not show its default {a.default!r}")
        text = p.format_help()
        for bad in ("(default: None)", "(config:"):
            if bad in text:
                problems.append(f"{name}: --help shows {bad!r}")
    for s, meanings in shorts.items():
        if len(meanings) > 1 or (s in SHORT_FLAGS and meanings != {SHORT_FLAGS[s]}):
            problems.append(f"short flag {s} means {sorted(meanings)} (one meaning only; {SHORT_FLAGS.get(s)})")
    assert problems == [], "\n".join(problems)


@pytest.mark.slow
def test_demo_help_shows_the_config_values(parsers):
    from pipeline.config import DEFAULT_CONFIG, load_config

    cfg = load_config(DEFAULT_CONFIG)
    text = dict(parsers)["pipeline.demo"].format_help()
    assert f"(default: {cfg.out} from" in text and f"(default: {cfg.epochs} from" in text


def test_every_cli_is_walked():
    assert {"vico.train", "PIRender.train", "pipeline.demo", "preprocess.convert", "common.synthetic.__main__",
            "common.dataset", "evaluation.evaluate", "pipeline.generate", "pipeline.submit",
            "preprocess.prepare_videos", "common.weights"} <= set(CLIS)


def test_old_spelling_still_works():
    from common.synthetic.__main__ import build_parser

    p = build_parser()
    assert p.parse_args(["--out", "x", "--sample-rate", "16000"]).sample_rate == 16000
    assert p.parse_args(["--out", "x", "--sample_rate", "16000"]).sample_rate == 16000
    assert "--sample-rate" not in p.format_help()
