#!/usr/bin/env python
"""Check golden fixtures (tensors recorded from the authors' code) against this repository.

    python ci/golden.py --method paco tests/golden/paco/*.pt       # the fixtures shipped in the repository
    python ci/golden.py --method paco ../shared/golden/paco/*.pt   # any other fixture set, e.g. the shared one
    python ci/golden.py --method paco                              # no files: every .pt of $GOLDEN_DIR/paco
                                                                   # ($GOLDEN_DIR defaults to tests/golden)

Prints one line per file (PASS/FAIL, the worst key and its error) and a last line ``N passed, M failed``;
exits 1 if any file fails or is not recognised by the method's checks.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # works from a plain checkout too, not only after `pip install -e .`
    sys.path.append(str(ROOT))

from common.golden import UnrecognisedFixture, golden_fixtures, load_fixture  # noqa: E402

METHODS = ("cacr", "ascl", "paco", "mcl", "attentionce")


def check_file(checks, path: str, verbose: bool) -> bool:
    start = time.perf_counter()
    try:
        fixture = load_fixture(path)
        results = checks.check_fixture(path, fixture)
    except UnrecognisedFixture as exc:
        print(f"FAIL {path}: not recognised ({exc})")
        return False
    except Exception as exc:  # a crash in a check is a failure of that file, not of the run
        print(f"FAIL {path}: {type(exc).__name__}: {exc}")
        if verbose:
            traceback.print_exc()
        return False
    if not results:
        print(f"FAIL {path}: the check compared no keys")
        return False
    failed = [r for r in results if not r.ok]
    worst = max(failed or results, key=lambda r: r.max_abs_err)
    status = "PASS" if not failed else "FAIL"
    elapsed = time.perf_counter() - start
    print(f"{status} {path}: {len(results)} keys, {len(failed)} failed; worst {worst.key} "
          f"abs {worst.max_abs_err:.3g} rel {worst.max_rel_err:.3g}"
          f"{' (' + worst.note + ')' if worst.note else ''} [{elapsed:.1f}s]")
    if verbose:
        for r in results:
            print(f"    {'ok  ' if r.ok else 'FAIL'} {r.key}: abs {r.max_abs_err:.3g} rel {r.max_rel_err:.3g} {r.note}")
    return not failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("files", nargs="*", help="fixture files (.pt); other files (json, md) are skipped; "
                                                 "default: every .pt of $GOLDEN_DIR/<method> (tests/golden/<method>)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every key")
    args = parser.parse_args(argv)
    if not args.files:
        try:
            args.files = [str(p) for p in golden_fixtures(args.method)]
        except FileNotFoundError as exc:
            print(f"error: {exc}; pass the fixture files or set $GOLDEN_DIR", file=sys.stderr)
            print("0 passed, 0 failed")
            return 1
    try:
        checks = importlib.import_module(f"{args.method}.golden_checks")
    except ModuleNotFoundError as exc:
        print(f"error: {args.method} has no golden checks yet ({exc})", file=sys.stderr)
        print(f"0 passed, {len(args.files)} failed")
        return 1
    passed = failed = 0
    for path in args.files:
        if not path.endswith(".pt"):
            continue
        if check_file(checks, path, args.verbose):
            passed += 1
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
