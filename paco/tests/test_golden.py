"""Golden fixtures recorded from the authors' code, checked through ci/golden.py (subprocess)."""
import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(os.environ.get("GOLDEN_DIR", REPO.parent / "shared" / "golden")) / "paco"


@pytest.mark.skipif(not GOLDEN_DIR.is_dir(), reason=f"no golden fixtures at {GOLDEN_DIR}")
def test_golden_fixtures_pass():
    files = sorted(glob.glob(str(GOLDEN_DIR / "*.pt")))
    assert files, f"no .pt fixtures in {GOLDEN_DIR}"
    proc = subprocess.run([sys.executable, str(REPO / "ci" / "golden.py"), "--method", "paco", *files],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(files)} passed, 0 failed" in proc.stdout, proc.stdout
