"""Golden fixtures recorded from the original CACR code (see tests/golden/cacr/README.md)."""

from ci.smoke import run_golden


def test_golden_fixtures_pass():
    run_golden("cacr")
