"""docs/weights.md holds the weights table generated from the registry, unchanged."""
from __future__ import annotations

from pathlib import Path

from common import weights as W

DOC = Path(__file__).resolve().parents[2] / "docs" / "weights.md"


def test_docs_weights_table_is_the_generated_one():
    text = DOC.read_text(encoding="utf-8")
    assert text.count(W.TABLE_START) == 1 and text.count(W.TABLE_END) == 1
    block = text.split(W.TABLE_START, 1)[1].split(W.TABLE_END, 1)[0]
    assert block == "\n" + W.weights_table(), \
        "docs/weights.md and the registry differ: run python -m common.weights table --update docs/weights.md"
    for name, spec in W.REGISTRY.items():  # every entry, with its place and flag
        assert f"| `{name}` |" in block and f"`{spec.flag}`" in block
