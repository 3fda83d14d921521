"""ci/results.py on fake runs (no training): output parsing, per-run timing and merging, aggregation, table, plot."""
import json
import math
import threading

import pytest

from ci import results
from ci.results import Variant

FAKE_TRAIN = """#!/usr/bin/env bash
# stands in for a method's sh/train.sh: prints what the real ones print, seed-dependent
set -e
seed=$2
echo "initial evaluation: net0 10.00 net1 11.00 ensemble 10.50"
printf 'epoch 0 |####| 1/1\\r'
echo "initial knn top-1: 50.0"
echo "final knn top-1: $((60 + seed)).5"
[ "$3" != "--crash" ] || { echo "error: bad flag" >&2; exit 2; }
[ "$3" != "--hang" ] || sleep 30
"""


def _fake_method(tmp_path):
    folder = tmp_path / "fake" / "sh"
    folder.mkdir(parents=True)
    (folder / "train.sh").write_text(FAKE_TRAIN)
    return tmp_path


def test_runs_are_parsed_timed_merged_and_reported(tmp_path):
    root = _fake_method(tmp_path)
    runs_root = tmp_path / "runs"
    runs_root.mkdir()
    method = Variant("fake", "fake", "Fake", "--seed")
    baseline = Variant("fake-base", "fake", "Fake base", "--seed", ("--base",), True)
    json_path, lock = tmp_path / "results.json", threading.Lock()

    records = [results.run_one(v, seed, runs_root, 1, 60, method_root=root)
               for v in (method, baseline) for seed in (0, 1, 2)]
    for record in records:
        assert record["error"] is None, record
        # the "initial evaluation: ..." line is not a metric; the \r-joined progress line does not hide the next
        assert record["metrics"] == {"knn top-1": {"initial": 50.0, "final": 60.5 + record["seed"]}}
        assert record["wall_s"] >= 0 and record["cpu_s"] >= 0 and record["threads"] == 1
        merged = results.merge_run(json_path, record, lock)
    assert len({r["run_dir"] for r in records}) == 6  # a fresh CL_RUNS_DIR per run: no auto-resume across seeds
    assert sorted(merged["runs"]) == sorted(f"{v}/seed{s}" for v in ("fake", "fake-base") for s in (0, 1, 2))

    crashed = results.run_one(Variant("fake", "fake", "Fake", "--seed", ("--crash",)), 1, runs_root, 1, 60,
                              method_root=root)
    assert crashed["error"].startswith("exit code 2") and "error: bad flag" in crashed["error"]
    hung = results.run_one(Variant("fake", "fake", "Fake", "--seed", ("--hang",)), 0, runs_root, 1, 0.5,
                           method_root=root)
    assert "killed after --timeout" in hung["error"] and hung["wall_s"] < 20
    data = results.merge_run(json_path, crashed, lock)  # replaces fake/seed1, keeps the rest
    assert json.loads(json_path.read_text()) == data and len(data["runs"]) == 6

    rows = results.aggregate(data["runs"])
    assert [(r["variant"], r["seeds"], r["failed"]) for r in rows] == [("fake", [0, 2], 1),
                                                                      ("fake-base", [0, 1, 2], 0)]
    assert rows[0]["final_mean"] == pytest.approx(61.5) and rows[0]["final_std"] == pytest.approx(math.sqrt(2))
    assert rows[1]["final_mean"] == pytest.approx(61.5) and rows[1]["final_std"] == pytest.approx(1.0)
    assert rows[1]["initial_mean"] == 50.0 and rows[1]["initial_std"] == 0.0
    table = results.markdown_table(rows)
    assert "| Fake | default | knn top-1 | 0,2 (1 failed) | 50.00 ± 0.00 | **61.50 ± 1.41** |" in table
    assert "| Fake base | baseline: `--base` | knn top-1 | 0,1,2 | 50.00 ± 0.00 | 61.50 ± 1.00 |" in table

    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    out.mkdir()
    results.write_report(out, data)
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table in (out / "results.md").read_text()


def test_every_variant_names_a_real_script_and_seed_flag():
    assert len(results.VARIANT_BY_NAME) == len(results.VARIANTS)
    for variant in results.VARIANTS:
        script = results.ROOT / variant.method / "sh" / "train.sh"
        assert script.is_file(), script
        assert variant.baseline == bool(variant.flags)


def _record(variant, seed, final, baseline=False, method="fake", metric="knn top-1"):
    return {"variant": variant, "method": method, "label": variant.title(), "seed": seed, "baseline": baseline,
            "flags": ["--base"] if baseline else [], "metrics": {metric: {"initial": 50.0, "final": final}},
            "wall_s": 10.0, "cpu_s": 9.0, "threads": 1, "load_average_at_start": 0.5, "error": None}


FAKE_RUNS = {f"{v}/seed{s}": _record(v, s, final, baseline=v != "fake")
             for v, finals in (("fake", (62.0, 60.0, 65.0)), ("fake-base", (60.0, 61.0, 61.0)))
             for s, final in enumerate(finals)}


def test_paired_differences_are_per_seed():
    rows = results.aggregate({**FAKE_RUNS, "fake-base/seed3": _record("fake-base", 3, 99.0, baseline=True)})
    (d,) = results.paired_differences(rows)
    assert (d["method"], d["baseline"], d["metric"], d["seeds"]) == ("Fake", "Fake-Base", "knn top-1", [0, 1, 2])
    assert d["differences"] == [2.0, -1.0, 4.0]          # seed 3 has no method run: left out, not averaged in
    assert d["mean"] == pytest.approx(5 / 3) and d["std"] == pytest.approx(math.sqrt(19 / 3))
    assert "| Fake | Fake-Base | knn top-1 | 0,1,2 | +2.00, -1.00, +4.00 | +1.67 ± 2.52 |" in \
        results.differences_table([d])


def test_plot_only_rebuilds_table_and_figure_without_training(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    (tmp_path / "results.json").write_text(json.dumps({"runs": FAKE_RUNS}))
    before = (tmp_path / "results.json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("--plot-only must not train")
    monkeypatch.setattr(results, "run_one", no_training)
    assert results.main(["--plot-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.json").read_text() == before
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "results.md").read_text()
    assert "| Fake | default | knn top-1 | 0,1,2 | 50.00 ± 0.00 | **62.33 ± 2.52** |" in table
    assert "+2.00, -1.00, +4.00 | +1.67 ± 2.52 |" in table


def test_plot_only_without_results_is_a_user_error(tmp_path):
    with pytest.raises(results.UserError, match="no runs to report"):
        results.main(["--plot-only", "--out", str(tmp_path)])
