"""Golden fixtures recorded from the authors' code, checked through ``ci/golden.py`` (subprocess)."""
import pytest

from ci.smoke import golden_dir, run_golden


@pytest.mark.skipif(not (golden_dir() / "mcl").is_dir(), reason=f"no golden fixtures at {golden_dir()}")
def test_golden_fixtures_pass():
    run_golden("mcl")
