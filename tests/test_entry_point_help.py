"""``--help`` of every entry point of the five methods: exits 0 and shows the default of every option that has one.

Each entry point runs from its method folder (as the ``sh/`` scripts run them; all in one interpreter through
``ci/entry_batch.py``) through a small wrapper that records the parser printing the help; every action with a
default other than None / SUPPRESS must be rendered (by the parser's own formatter) with ``default:`` and that rendering must be part of the printed help.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

from ci import warm
from ci.smoke import ROOT, smoke_env

ENTRY_POINTS = [
    ("cacr", "small_scale_experiments/main_ours.py"),
    ("cacr", "small_scale_experiments/linear_eval.py"),
    *[("cacr", f"small_scale_experiments/{d}/{f}") for d in ("cifar10", "cifar100", "stl10")
      for f in ("main_ours.py", "linear_eval.py")],
    ("cacr", "large_scale_shift_experiments/imagenet/main_ours.py"),
    ("cacr", "large_scale_shift_experiments/imagenet/main_lincls.py"),
    ("cacr", "large_scale_shift_experiments/imagenet/scripts/create_imagenet_subset.py"),
    ("cacr", "large_scale_shift_experiments/webvision/main_ours.py"),
    ("cacr", "large_scale_shift_experiments/webvision/main_lincls.py"),
    ("cacr", "imagenet_pretraining/main_pretrain.py"),
    ("cacr", "imagenet_pretraining/main_lincls.py"),
    ("cacr", "imagenet_pretraining/main_knn.py"),
    ("cacr", "imagenet_pretraining/convert_to_deit.py"),
    ("ascl", "main.py"),
    ("ascl", "main_simple.py"),
    ("ascl", "ImageNet-1K/main_moco.py"),
    ("paco", "LT/paco_lt.py"),
    ("paco", "LT/paco_fp16_places.py"),
    ("paco", "LT/paco_cifar.py"),
    ("paco", "Full-ImageNet/paco_imagenet.py"),
    ("mcl", "main_cifar.py"),
    ("mcl", "main_imagenet.py"),
    ("mcl", "main_moco_mcl.py"),
    ("mcl", "main_lincls.py"),
    ("attentionce", "image/main.py"),
    ("attentionce", "image/linear.py"),
    ("attentionce", "tiny-Imagenet/main.py"),
    ("attentionce", "tiny-Imagenet/linear.py"),
]

# runs ENTRY with --help; records, for the parser that printed its help, every action's default and its rendering.
# All entry points run in one interpreter (ci/entry_batch.py: each job executes this file as __main__ with its own
# argv, cwd and environment), so argparse is patched once and each job's record path is read when the help prints.
WRAPPER = r"""
import argparse, json, os, runpy, sys
entry = sys.argv[1]
if not hasattr(argparse.ArgumentParser, "_print_help_unrecorded"):
    argparse.ArgumentParser._print_help_unrecorded = argparse.ArgumentParser.print_help
    def print_help(self, file=None):
        formatter = self._get_formatter()
        rows = [{"options": a.option_strings or [a.dest], "default": None if a.default is None
                 else ("SUPPRESS" if a.default == argparse.SUPPRESS else repr(a.default)),
                 "rendered": formatter._format_action(a)} for a in self._actions]
        with open(os.environ["HELP_RECORD"], "w") as f:
            json.dump(rows, f)
        argparse.ArgumentParser._print_help_unrecorded(self, file)
    argparse.ArgumentParser.print_help = print_help
sys.argv = [entry, "--help"]
sys.path.insert(0, os.path.dirname(os.path.abspath(entry)))
runpy.run_path(entry, run_name="__main__")
"""


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory) -> dict:
    """``{(method, entry): (result of ci/entry_batch.py, record path)}``: every entry point's ``--help`` in one
    interpreter (33 subprocesses cost ~100 s CPU importing torch; one batch ~5 s). ``CL_HELP_ISOLATED=1`` runs each
    in its own interpreter instead (``entry_batch.py --isolated``, same assertions)."""
    tmp = tmp_path_factory.mktemp("help")
    wrapper = tmp / "help_wrapper.py"
    wrapper.write_text(WRAPPER)
    jobs, records = [], {}
    for i, (method, entry) in enumerate(ENTRY_POINTS):
        records[(method, entry)] = tmp / f"help{i}.json"
        jobs.append({"id": str(i), "cwd": str(ROOT / method), "entry": str(wrapper), "argv": [entry],
                     "env": {"HELP_RECORD": str(records[(method, entry)])}, "timeout": 120})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    isolated = ["--isolated"] if os.environ.get("CL_HELP_ISOLATED") == "1" else []
    proc = warm.run([sys.executable, str(ROOT / "ci" / "entry_batch.py"), *isolated, str(tmp / "jobs.json"),
                     str(tmp / "results.json")], ROOT, smoke_env(tmp), 600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((tmp / "results.json").read_text())
    return {key: (results[str(i)], records[key]) for i, key in enumerate(ENTRY_POINTS)}


def test_every_entry_point_is_listed():
    """A new entry point (a file run as __main__ with a parser) must be added above."""
    found = []
    for method in ("cacr", "ascl", "paco", "mcl", "attentionce"):
        for dirpath, _, files in os.walk(ROOT / method):
            if "tests" in dirpath.split(os.sep):
                continue
            for name in files:
                path = os.path.join(dirpath, name)
                if name.endswith(".py") and 'if __name__ == "__main__"' in open(path).read():
                    found.append((method, os.path.relpath(path, ROOT / method)))
    assert sorted(found) == sorted(ENTRY_POINTS)


@pytest.mark.parametrize("method,entry", ENTRY_POINTS, ids=[f"{m}/{e}" for m, e in ENTRY_POINTS])
def test_help_shows_every_default(method, entry, help_runs):
    result, record = help_runs[(method, entry)]
    assert result["returncode"] == 0, result["stderr"][-2000:]
    help_text = result["stdout"]
    assert help_text.startswith("usage:")
    rows = json.loads(record.read_text())
    missing = [r["options"][0] for r in rows
               if r["default"] not in (None, "SUPPRESS") and "--help" not in r["options"]
               and "default:" not in r["rendered"]]
    assert not missing, f"{method}/{entry} --help does not show the default of {missing}"
    squeezed = "".join(help_text.split())  # the recorded rendering may wrap at other places
    for r in rows:
        assert "".join(r["rendered"].split()) in squeezed, r["options"]
