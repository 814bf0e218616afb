"""common.config: the one YAML-to-dataclass loader used by the demo, PIRender and vico configs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.config import from_dict, read_yaml
from common.io import UserError


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    layers: tuple[str, ...] = ("a", "b")


@dataclass
class Outer:
    steps: int = 10
    name: str = "run"
    flag: bool = False
    out: Path = Path("out")
    image: Path | None = None
    inner: Inner = field(default_factory=Inner)


def test_nested_build_with_conversions(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("steps: 20.0\nname: 7\nflag: true\nout: /tmp/x\nimage: null\ninner:\n  rate: 1\n  layers: [c]\n")
    cfg = from_dict(Outer, read_yaml(y), str(y))
    assert cfg == Outer(steps=20, name="7", flag=True, out=Path("/tmp/x"), image=None,
                        inner=Inner(rate=1.0, layers=("c",)))
    assert type(cfg.steps) is int and type(cfg.inner.rate) is float
    assert from_dict(Outer, {}, "x") == Outer()  # missing keys keep their defaults


def test_unknown_keys_and_bad_types_are_one_line_naming_file_and_key(tmp_path):
    with pytest.raises(UserError, match=r"^run\.yaml: unknown key\(s\) \['inner\.rat'\] \(known: rate, layers\)$"):
        from_dict(Outer, {"inner": {"rat": 1}}, "run.yaml")
    with pytest.raises(UserError, match=r"^cfg\.yaml: unknown model field\(s\) \['stepz'\]"):
        from_dict(Outer, {"stepz": 1}, "cfg.yaml", what="model field")
    for raw, msg in (({"steps": 2.5}, "steps: expected an integer, got 2.5"),
                     ({"steps": "ten"}, "steps: expected a number, got 'ten'"),
                     ({"flag": 1}, "flag: expected true/false, got 1"),
                     ({"inner": {"rate": True}}, "inner.rate: expected a number, got True"),
                     ({"inner": [1]}, "inner: expected a mapping, got list"),
                     ({"image": 3}, "image: expected a path, got 3")):
        with pytest.raises(UserError) as e:
            from_dict(Outer, raw, "run.yaml")
        assert str(e.value) == f"run.yaml: {msg}" and "\n" not in str(e.value)


def test_read_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        read_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match=r"bad.yaml: not valid YAML \(") as e:
        read_yaml(bad)
    assert "\n" not in str(e.value)
