"""Golden fixtures recorded from the authors' code: every file must pass ``ci/golden.py --method ascl``."""
from ci.smoke import run_golden


def test_golden_fixtures_pass():
    run_golden("ascl")
