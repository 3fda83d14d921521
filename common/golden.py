"""Helpers for the per-method golden-fixture checks (see ``ci/golden.py``).

Each method folder provides ``<method>/golden_checks.py`` with one function::

    check_fixture(path: str, fixture: dict) -> list[KeyResult]

that recomputes every key of one fixture file with this repository's code and compares it with
:func:`compare`.  It raises :class:`UnrecognisedFixture` for a file it does not know, so the dispatcher can
report it as a failure rather than silently passing it.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import torch


class UnrecognisedFixture(Exception):
    """The fixture's family (kind / source / file name) is not one this method's checks know."""


@dataclass
class KeyResult:
    key: str
    max_abs_err: float
    max_rel_err: float
    ok: bool
    note: str = ""


def compare(key: str, actual, expected, atol: float = 1e-5, rtol: float = 1e-4, note: str = "") -> KeyResult:
    """Compare ``actual`` to ``expected`` elementwise: |a - e| <= atol + rtol * |e| (torch.allclose rule).

    Works for tensors, numbers, bools and (nested) lists of numbers.  Shape mismatch is a failure.
    """
    a = torch.as_tensor(actual).detach().cpu()
    e = torch.as_tensor(expected).detach().cpu()
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
