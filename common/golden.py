"""Helpers for the per-method golden-fixture checks (see ``ci/golden.py``).

Each method folder provides ``<method>/golden_checks.py`` with one function::

    check_fixture(path: str, fixture: dict) -> list[KeyResult]

that recomputes every key of one fixture file with this repository's code and compares it with
:func:`compare`.  It raises :class:`UnrecognisedFixture` for a file it does not know, so the dispatcher can
report it as a failure rather than silently passing it.

The fixtures ship with the repository in ``tests/golden/<method>/``; ``$GOLDEN_DIR`` points the checker and the
tests at another set (e.g. ``../shared/golden`` or a second fixture set with other configurations).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import os
from pathlib import Path

import torch

IN_REPO_GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests" / "golden"


def golden_dir() -> Path:
    """Where the golden fixtures are: ``$GOLDEN_DIR`` if set, else the copy in the repository (``tests/golden``)."""
    override = os.environ.get("GOLDEN_DIR")
    return Path(override) if override else IN_REPO_GOLDEN_DIR


def golden_file(*parts: str) -> Path:
    """``golden_dir() / parts``, which must exist: a missing fixture is a failure, never a reason to skip a test.

    Raises FileNotFoundError naming the path and where the fixtures are looked for.
    """
    path = golden_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"golden fixture {path} not found (fixtures are read from $GOLDEN_DIR if set, "
                                f"else from {IN_REPO_GOLDEN_DIR})")
    return path


def golden_fixtures(method: str) -> list[Path]:
    """Every ``.pt`` fixture of ``golden_dir()/<method>``, sorted; FileNotFoundError if the folder is missing or
    holds none (an empty fixture set must not pass as "0 failed")."""
    folder = golden_file(method)
    files = sorted(folder.glob("*.pt"))
    if not files:
        raise FileNotFoundError(f"no .pt golden fixtures in {folder}")
    return files


class UnrecognisedFixture(Exception):
    """The fixture's family (kind / source / file name) is not one this method's checks know."""


@dataclass
class KeyResult:
    key: str
    max_abs_err: float
    max_rel_err: float
    ok: bool
    note: str = ""


def _as_tensor(value) -> torch.Tensor:
    if torch.is_tensor(value):
        return value.detach().cpu()
    t = torch.as_tensor(value)
    if t.is_floating_point() and not hasattr(value, "dtype"):
        # Python floats (or lists of them) are doubles: torch.as_tensor would round them to the default dtype
        t = torch.as_tensor(value, dtype=torch.float64)
    return t


def compare(key: str, actual, expected, atol: float = 1e-5, rtol: float = 1e-4, note: str = "") -> KeyResult:
    """Compare ``actual`` to ``expected`` elementwise: |a - e| <= atol + rtol * |e| (torch.allclose rule).

    Works for tensors, numbers, bools and (nested) lists of numbers.  Shape mismatch is a failure.  Each side keeps
    the precision it is given: Python floats (and lists of them) become float64, not torch's default float32, so a
    value computed exactly in float64 (e.g. ``230 / 300 * 100``) is not rounded by ~1e-6 before a 1e-9 comparison;
    tensors keep their dtype (a float32 tensor carries its float32 rounding, as recorded).
    """
    a = _as_tensor(actual)
    e = _as_tensor(expected)
    if a.shape != e.shape:
        return KeyResult(key, math.inf, math.inf, False, f"shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    if e.numel() == 0:
        return KeyResult(key, 0.0, 0.0, True, note)
    if not (e.is_floating_point() or a.is_floating_point()):
        ok = bool(torch.equal(a.to(e.dtype), e))
        err = 0.0 if ok else float((a.long() != e.long()).sum())
        return KeyResult(key, err, err, ok, note or "exact")
    a = a.double()
    e = e.double()
    finite_match = torch.equal(torch.isfinite(a), torch.isfinite(e)) and torch.equal(
        a[~torch.isfinite(a)].nan_to_num(0.0), e[~torch.isfinite(e)].nan_to_num(0.0))
    fa, fe = a[torch.isfinite(e)], e[torch.isfinite(e)]
    diff = (fa - fe).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    max_rel = float((diff / fe.abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    ok = finite_match and bool((diff <= atol + rtol * fe.abs()).all())
    return KeyResult(key, max_abs, max_rel, ok, note)


def load_fixture(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
