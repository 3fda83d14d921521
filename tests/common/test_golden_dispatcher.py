"""ci/golden.py: one line per file, a closing `N passed, M failed`, non-zero exit on any failure."""
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, str(ROOT / "ci" / "golden.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env=env)


def _fake_method(tmp_path, body):
    """A throwaway method package on PYTHONPATH so the dispatcher can be tested on its own."""
    pkg = tmp_path / "pkgs" / "cacr"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "golden_checks.py").write_text(textwrap.dedent(body))
    import os
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path / "pkgs")
    return env


CHECKS = """
from common.golden import UnrecognisedFixture, compare
import torch

def check_fixture(path, fixture):
    if fixture.get("meta", {}).get("kind") != "square":
        raise UnrecognisedFixture("kind " + str(fixture.get("meta", {}).get("kind")))
    x = fixture["tensors"]["x"]
    return [compare("y", x * x, fixture["tensors"]["y"], atol=1e-6)]
"""


def _write(tmp_path, name, y_offset=0.0, kind="square"):
    x = torch.arange(4.0)
    path = tmp_path / name
    torch.save({"tensors": {"x": x, "y": x * x + y_offset}, "hparams": {}, "meta": {"kind": kind}}, path)
    return str(path)


def test_pass_fail_and_unrecognised(tmp_path):
    env = _fake_method(tmp_path, CHECKS)
    good = _write(tmp_path, "good.pt")
    bad = _write(tmp_path, "bad.pt", y_offset=1e-3)
    unknown = _write(tmp_path, "unknown.pt", kind="other")
    out = _run(["--method", "cacr", good], env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"
    assert out.stdout.startswith("PASS")

    out = _run(["--method", "cacr", good, bad, unknown], env=env)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 1
    assert lines[-1] == "1 passed, 2 failed"
    assert lines[1].startswith("FAIL") and "worst y" in lines[1]
    assert lines[2].startswith("FAIL") and "not recognised" in lines[2]


def test_crashing_check_is_a_failure(tmp_path):
    env = _fake_method(tmp_path, "def check_fixture(path, fixture):\n    raise RuntimeError('boom')\n")
    out = _run(["--method", "cacr", _write(tmp_path, "a.pt")], env=env)
    assert out.returncode == 1
    assert "RuntimeError: boom" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_compare_tolerance_and_shape():
    from common.golden import compare
    assert compare("k", torch.ones(3), torch.ones(3) + 1e-7, atol=1e-6).ok
    assert not compare("k", torch.ones(3), torch.ones(3) + 1e-3, atol=1e-6, rtol=0).ok
    assert not compare("k", torch.ones(3), torch.ones(4)).ok
    assert compare("k", torch.tensor([1, 2]), torch.tensor([1, 2])).ok
    assert not compare("k", torch.tensor([1, 2]), torch.tensor([1, 3])).ok
    assert not compare("k", torch.tensor([float("nan")]), torch.tensor([1.0])).ok
