"""ci/memory_vs_originals.py on a stand-in harness (the shared benchmark is not part of a clone): each side's
peak memory is measured in its own process and tells a big intermediate from a small one."""
import json
import subprocess
import sys
import textwrap

from ci.smoke import ROOT

HARNESS = textwrap.dedent('''
    import torch

    def case():
        def original():          # a 64 MiB intermediate
            x = torch.ones(16 << 20)
            return x.sum()

        def project():           # a 4 MiB one
            x = torch.ones(1 << 20)
            return x.sum()

        return original, project

    P1_CASES = [("stand_in", "sizes", 0.9, case, "")]
''')


def test_each_side_peak_in_its_own_process(tmp_path):
    bench = tmp_path / "harness.py"
    bench.write_text(HARNESS)
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "ci/memory_vs_originals.py", "--bench", str(bench), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["case"] == "stand_in"
    assert 60 <= row["original_mib"] <= 80, row
    assert 2 <= row["project_mib"] <= 12, row


def test_missing_harness_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "ci/memory_vs_originals.py", "--bench", str(tmp_path / "none.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no benchmark at"), proc.stderr
    assert "Traceback" not in proc.stderr
