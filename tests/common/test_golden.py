"""common.golden: where the fixtures are found (in-repo copy, $GOLDEN_DIR, missing = failure) and the precision
of ``compare``."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ci.smoke import run_golden
from common.golden import IN_REPO_GOLDEN_DIR, compare, golden_dir, golden_file, golden_fixtures

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("cacr", "ascl", "paco", "mcl", "attentionce")


# ------------------------------------------------------------------------------------------------------ location
def test_default_is_the_in_repo_copy(monkeypatch):
    monkeypatch.delenv("GOLDEN_DIR", raising=False)
    assert golden_dir() == IN_REPO_GOLDEN_DIR == ROOT / "tests" / "golden"
    for method in METHODS:
        assert golden_fixtures(method), method
        assert golden_file(method, "README.md").is_file()
        assert golden_file(method, "archs.json").is_file()


def test_golden_dir_overrides(monkeypatch, tmp_path):
    (tmp_path / "paco").mkdir()
    torch.save({}, tmp_path / "paco" / "one.pt")
    monkeypatch.setenv("GOLDEN_DIR", str(tmp_path))
    assert golden_dir() == tmp_path
    assert golden_fixtures("paco") == [tmp_path / "paco" / "one.pt"]


def test_missing_fixture_folder_fails_the_golden_runner(monkeypatch, tmp_path):
    """An empty $GOLDEN_DIR (or an empty method folder) makes run_golden raise, i.e. the golden test fails."""
    monkeypatch.setenv("GOLDEN_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"golden fixture .*paco not found"):
        run_golden("paco")
    (tmp_path / "paco").mkdir()
    (tmp_path / "paco" / "README.md").write_text("no tensors\n")
    with pytest.raises(FileNotFoundError, match="no .pt golden fixtures"):
        run_golden("paco")
    with pytest.raises(FileNotFoundError, match="archs.json"):
        golden_file("paco", "archs.json")


def test_checker_without_files_uses_golden_dir(tmp_path):
    import os
    env = {**os.environ, "GOLDEN_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "ci" / "golden.py"), "--method", "paco"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.startswith("error: golden fixture") and "Traceback" not in out.stderr
    assert out.stdout.strip() == "0 passed, 0 failed"


def test_fixtures_are_tracked_by_git():
    """.gitignore must not drop the fixtures from a clone (skipped only outside a git checkout, e.g. an archive)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "tests/golden"], cwd=ROOT, capture_output=True, text=True, check=True)
    tracked = set(out.stdout.split())
    on_disk = {str(p.relative_to(ROOT)) for p in IN_REPO_GOLDEN_DIR.rglob("*") if p.is_file()}
    assert on_disk and on_disk <= tracked, sorted(on_disk - tracked)


# ------------------------------------------------------------------------------------------------------ compare
def test_python_float_is_compared_in_float64():
    """230/300*100 is not a float32 number (float32 rounds it by ~2.5e-6): a float64 result must match the
    Python float at 1e-9, and a float32 rounding of it must not."""
    exact = 230 / 300 * 100
    assert abs(float(torch.tensor(exact, dtype=torch.float32)) - exact) > 1e-6   # float32 cannot represent it
    assert compare("acc", torch.tensor(exact, dtype=torch.float64), exact, atol=1e-9, rtol=0).ok
    assert compare("acc", exact, torch.tensor(exact, dtype=torch.float64), atol=1e-9, rtol=0).ok
    assert compare("acc", [exact, 1 / 3], [exact, 1 / 3], atol=1e-12, rtol=0).ok
    assert compare("acc", np.float64(exact), exact, atol=1e-12, rtol=0).ok
    rounded = compare("acc", torch.tensor(exact, dtype=torch.float32), exact, atol=1e-9, rtol=0)
    assert not rounded.ok and 1e-6 < rounded.max_abs_err < 1e-5


def test_float32_keeps_float32_semantics():
    x = torch.tensor([0.1, 1 / 3], dtype=torch.float32)
    assert compare("x", x, x.clone(), atol=0, rtol=0).ok
    # a float32 result against a float32 record within float32 tolerance
    assert compare("x", x * (1 + 1e-7), x, atol=1e-6, rtol=1e-5).ok
    assert not compare("x", x * (1 + 1e-3), x, atol=1e-6, rtol=1e-5).ok
    # integers and bools stay exact
    assert compare("n", 3, torch.tensor(3)).ok and not compare("n", [1, 2], [1, 3]).ok
    assert compare("b", True, torch.tensor(True)).ok
