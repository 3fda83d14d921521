"""The ImageNet entry point takes MoCo's flag spellings (issue 16: the originals' commands verbatim)."""
from __future__ import annotations

import pytest

from ascl.imagenet_main_moco import build_parser


def test_moco_t_is_the_student_temperature():
    """MoCo's --moco-t used to be refused as ambiguous (--moco-t1 / --moco-t2); the original's main_moco passed
    its single temperature positionally into the builder's T1, so that is what it sets (keywords: quirk 6 fixed)."""
    args = build_parser().parse_args(["--moco-t", "0.2", "/data"])
    assert (args.moco_t1, args.moco_t2) == (0.2, 0.05)
    args = build_parser().parse_args(["--moco-t1", "0.3", "--moco-t2", "0.04", "/data"])
    assert (args.moco_t1, args.moco_t2) == (0.3, 0.04)


def test_other_moco_flags_unchanged():
    args = build_parser().parse_args(["--moco-k", "4096", "--moco-m", "0.99", "--moco-dim", "64", "/data"])
    assert (args.moco_k, args.moco_m, args.moco_dim, args.moco_t1) == (4096, 0.99, 64, 0.1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--moco-t", "x", "/data"])
