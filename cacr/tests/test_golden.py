"""Golden fixtures recorded from the original CACR code (see shared/golden/cacr/README.md)."""

import pytest

from ci.smoke import golden_dir, run_golden


@pytest.mark.skipif(not (golden_dir() / "cacr").is_dir(), reason=f"no golden fixtures at {golden_dir()}")
def test_golden_fixtures_pass():
    run_golden("cacr")
