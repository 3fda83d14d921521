import subprocess
import sys
import textwrap

import pytest
import torch

from common.utils import (UserError, autocast, check_finite, get_device, seed_everything, to_channels_last)


def _run(code: str):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)


def test_run_main_user_error_exit_code_and_message():
    r = _run("""
        from common.utils import UserError, run_main
        def main():
            raise UserError("data path '/nope' does not exist; pass --data")
        run_main(main)
    """)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: data path '/nope' does not exist; pass --data"
    assert "Traceback" not in r.stderr


def test_run_main_flag_overflow_is_a_user_error_other_runtime_errors_are_not():
    """An --lr beyond float32 fails inside the optimizer's step; that one torch error is reported as the user's, any
    other RuntimeError keeps its traceback (it is a bug, not bad input)."""
    r = _run("""
        import torch
        from common.utils import run_main
        def main():
            weight = torch.nn.Parameter(torch.ones(2))
            weight.sum().backward()
            torch.optim.SGD([weight], lr=1e300).step()
        run_main(main)
    """)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: a hyper-parameter given on the command line (usually --lr, or --wd / --momentum) is beyond the "
        "float32 range (|x| < 3.4e38) that the optimizer applies it in; pass a smaller value"]
    r = _run("""
        from common.utils import run_main
        def main():
            raise RuntimeError("shape mismatch")
        run_main(main)
    """)
    assert r.returncode == 1 and "Traceback" in r.stderr and "shape mismatch" in r.stderr


def test_run_main_keyboard_interrupt_and_success():
    r = _run("""
        from common.utils import run_main
        def main():
            raise KeyboardInterrupt
        run_main(main)
    """)
    assert r.returncode == 130
    r = _run("""
        from common.utils import run_main
        run_main(lambda: print("ok"))
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok"


def test_check_finite():
    check_finite(torch.tensor(1.5), step=3)
    check_finite(2.0, step=3)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(UserError) as e:
            check_finite(torch.tensor(bad), step=17)
        msg = str(e.value)
        assert "step 17" in msg and "learning rate" in msg and "overflow" in msg and "data" in msg


def test_get_device_and_autocast():
    assert get_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert get_device() == torch.device("cpu")
        with pytest.raises(UserError):
            get_device("cuda")
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast("cpu", enabled=True):
        assert lin(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), enabled=False):
        assert lin(x).dtype == torch.float32


def test_seed_everything_reproducible():
    import random
    import numpy as np
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(5)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_to_channels_last():
    x = to_channels_last(torch.randn(2, 3, 4, 4))
    assert x.is_contiguous(memory_format=torch.channels_last)
    conv = to_channels_last(torch.nn.Conv2d(3, 4, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    v = torch.randn(3)
    assert to_channels_last(v) is v
