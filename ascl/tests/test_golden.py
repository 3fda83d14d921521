"""Golden fixtures recorded from the authors' code: every file must pass ``ci/golden.py --method ascl``."""
import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(os.environ.get("GOLDEN_DIR", ROOT.parent / "shared" / "golden")) / "ascl"


@pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"no golden fixtures at {GOLDEN}")
def test_golden_fixtures_pass():
    files = sorted(glob.glob(str(GOLDEN / "*.pt")))
    assert files, f"no .pt fixtures in {GOLDEN}"
    proc = subprocess.run([sys.executable, str(ROOT / "ci" / "golden.py"), "--method", "ascl", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(files)} passed, 0 failed" in proc.stdout, proc.stdout
