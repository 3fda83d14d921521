"""Golden fixtures recorded from the authors' code, checked through ``ci/golden.py`` (subprocess)."""
import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(os.environ.get("GOLDEN_DIR", REPO.parent / "shared" / "golden")) / "mcl"


def test_golden_fixtures():
    files = sorted(glob.glob(str(GOLDEN_DIR / "*.pt")))
    if not GOLDEN_DIR.is_dir() or not files:
        pytest.skip(f"no golden fixtures at {GOLDEN_DIR}")
    proc = subprocess.run([sys.executable, "ci/golden.py", "--method", "mcl", *files], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(files)} passed, 0 failed" in proc.stdout
