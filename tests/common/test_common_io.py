import json
import subprocess
import sys

import pytest

from common.io import RunReport, UserError, atomic_path, is_complete, read_json, write_json_atomic


def test_atomic_path_success_and_failure(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert tmp.suffix == ".bin"
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"abc"  # untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]  # no temporary left
    assert is_complete(target) and not is_complete(tmp_path / "nope")


def test_user_error_is_one_line():
    assert str(UserError("a\nb   c")) == "a b c"


def test_run_report_merge_and_write(tmp_path):
    r = RunReport("stage", {"x": 1, "p": tmp_path}, tmp_path)
    r.ok("b", [tmp_path / "b.out"])
    r.fail("c", ValueError("bad\nthing"))
    other = RunReport("stage", None, tmp_path)
    other.ok("a")
    other.skip("d")
    r.merge([other.to_dict(), None])
    path = r.write()
    d = read_json(path)
    assert d["counts"] == {"done": 2, "skipped": 1, "failed": 1}
    assert [x["item"] for x in d["done"]] == ["a", "b"]
    assert d["failures"] == [{"item": "c", "reason": "bad thing"}]
    assert d["config"]["p"] == str(tmp_path)
    assert r.exit_code() == 1


def test_read_json_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        read_json(bad)
    write_json_atomic(tmp_path / "ok.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"a": [1, 2]}


def test_run_cli_turns_user_error_into_one_line(repo_root):
    code = ("from common.io import run_cli, UserError\n"
            "def main(argv):\n    raise UserError('x.mp4: broken')\n"
            "run_cli(main)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: x.mp4: broken"


def test_atomic_write_errors_name_the_final_file(tmp_path):
    """Short writes (np.save), errno-only OSErrors and torch.save's RuntimeError become an OSError
    naming the output, one ``PATH: cause`` line for run_cli; the temporary file is gone."""
    import errno as _errno

    from common.io import atomic_path, os_error_line

    out = tmp_path / "x.npy"
    for exc in (OSError("1350 requested and 468 written"), OSError(_errno.ENOSPC, "No space left on device"),
                RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")):
        with pytest.raises(OSError) as info:
            with atomic_path(out) as tmp:
                tmp.write_bytes(b"partial")
                raise exc
        line = os_error_line(info.value)
        assert line.startswith(f"{out}: ") and ("No space" in line or "disk full" in line), line
        assert list(tmp_path.iterdir()) == []
    e = OSError(_errno.EFBIG, "File too large", str(tmp_path / ".x.abcd1234.tmp.npy"))
    assert os_error_line(e) == f"{out}: File too large (file-size limit reached)"
