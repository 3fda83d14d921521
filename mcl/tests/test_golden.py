"""Golden fixtures recorded from the authors' code, checked through ``ci/golden.py`` (subprocess)."""
from ci.smoke import run_golden


def test_golden_fixtures_pass():
    run_golden("mcl")
