"""Small utilities every entry point needs: user-facing errors, seeding, device / AMP selection."""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import sys
from typing import Callable

import numpy as np
import torch


class UserError(Exception):
    """A problem the user can fix (bad path, incompatible flags, corrupt checkpoint, NaN loss, ...).

    The message should name the problem and the fix; :func:`run_main` prints it without a traceback.
    """


# torch errors whose only cause is a command-line value: (text of the RuntimeError, what to tell the user)
_USER_CAUSED_RUNTIME_ERRORS = (
    ("value cannot be converted to type float without overflow",
     "a hyper-parameter given on the command line (usually --lr, or --wd / --momentum) is beyond the float32 range "
     "(|x| < 3.4e38) that the optimizer applies it in; pass a smaller value"),
)


def as_user_error(error: BaseException) -> UserError | None:
    """The ``UserError`` a known command-line-caused torch ``RuntimeError`` stands for, else ``None``."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, RuntimeError):
        for text, message in _USER_CAUSED_RUNTIME_ERRORS:
            if text in str(error):
                return UserError(message)
    return None


def report_user_error(error: UserError) -> None:
    """``error: <msg>`` on stderr; with ``CL_TRACEBACK=1`` first the traceback of the exception being handled
    (call it inside the ``except`` block)."""
    if os.environ.get("CL_TRACEBACK"):
        import traceback
        traceback.print_exc()
    print(f"error: {error}", file=sys.stderr, flush=True)


def exit_on_user_error(fn: Callable, *args) -> None:
    """``fn(*args)``; a ``UserError`` (or a torch error caused by a flag value, see :func:`as_user_error`) →
    ``error: <msg>`` on stderr and exit 2. Any other exception keeps its traceback."""
    try:
        fn(*args)
    except (UserError, RuntimeError) as e:
        user_error = as_user_error(e)
        if user_error is None:
            raise
        report_user_error(user_error)
        sys.exit(2)


def run_main(fn: Callable[[], object]) -> None:
    """Run an entry point through :func:`exit_on_user_error`; Ctrl-C → exit 130.

    Set ``CL_TRACEBACK=1`` to see the full traceback of a user error as well.
    """
    try:
        exit_on_user_error(fn)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` formatter of every entry point: argparse's ArgumentDefaultsHelpFormatter, which appends
    ``(default: …)`` only to options that have a help text, extended to options without one, so every option
    with a default (other than None / SUPPRESS) shows it."""

    def _format_action(self, action):
        if not (action.help and action.help.strip()) and action.help is not argparse.SUPPRESS \
                and action.default is not None and action.default is not argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action):
        if action.default is None and "(default:" in (action.help or ""):
            return action.help  # the help already says what an unset option means
        return super()._get_help_string(action)

    def _format_action_invocation(self, action):
        if isinstance(action, BooleanFlag):
            return f"{action.option_strings[0]} [{{True,False}}], {', '.join(action.option_strings[1:])}"
        return super()._format_action_invocation(action)


class BooleanFlag(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``, and also the originals' spelled-out ``--flag True`` / ``--flag False`` (their
    ``type=bool`` / str2bool flags), each spelling meaning what it says (an original ``type=bool`` flag read
    "False" as True)."""

    TRUE, FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.nargs, self.metavar = "?", "{True,False}"

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string is not None and option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"argument {option_string}: takes no value (use {option_string[:2]}{option_string[5:]} "
                             f"{values})")
            setattr(namespace, self.dest, False)
        elif values is None or values.lower() in self.TRUE:
            setattr(namespace, self.dest, True)
        elif values.lower() in self.FALSE:
            setattr(namespace, self.dest, False)
        else:
            parser.error(f"argument {option_string}: expected True or False, got {values!r}")

    def format_usage(self):
        return " | ".join(self.option_strings)


def seed_everything(seed: int | None, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices). ``None`` does nothing.

    ``deterministic=True`` also asks cuDNN for deterministic kernels (the originals' ``--seed`` behaviour).
    """
    if seed is None:
        return
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def get_device(name: str | None = None) -> torch.device:
    """``name`` if given ('cpu', 'cuda', 'cuda:1', an int GPU index), else cuda when available, else cpu.

    Asking for CUDA on a machine without it is a ``UserError`` (suggest ``--device cpu``).
    """
    if name is None or name == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(name, int):
        name = f"cuda:{name}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was requested but CUDA is not available; run on CPU "
                        "(e.g. --device cpu, or drop --gpu)")
    return device


def _gpu_ids_text(ids) -> str:
    return " ".join(map(str, ids)) if isinstance(ids, (list, tuple)) else str(ids)


def gpus_available(flag: str, ids) -> bool:
    """Whether CUDA can serve a GPU-selecting flag (``--gpu 0``, ``--gpus 0 1``, ``--gpu-id 0,1``) set to ``ids``.

    Without CUDA this prints the one notice line every entry point prints for such a flag and returns False: the
    run goes on on the CPU (the originals' users keep their commands). Nothing is printed when the flag is unset
    or not on the command line (MCL's ``--gpu-id`` and ASCL's ``--gpuid`` default to 0: a CPU user who typed
    nothing asked for no GPU).
    """
    if torch.cuda.is_available():
        return True
    typed = any(a == flag or a.startswith(flag + "=") for a in sys.argv[1:])
    if typed and ids not in (None, "", [], ()):
        print(f"notice: {flag} {_gpu_ids_text(ids)} selects GPUs but CUDA is not available; running on the CPU",
              file=sys.stderr, flush=True)
    return False


def set_visible_gpus(flag: str, ids, keep_existing: bool = False) -> bool:
    """Apply a GPU-selecting flag the originals' way: its ids go to ``CUDA_VISIBLE_DEVICES`` *before* any CUDA call
    (CUDA reads the variable once, when it initialises; set later it is ignored), then :func:`gpus_available`.
    ``keep_existing``: a ``CUDA_VISIBLE_DEVICES`` already in the environment wins over the flag."""
    if ids not in (None, "", [], ()) and not (keep_existing and "CUDA_VISIBLE_DEVICES" in os.environ):
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids)) if isinstance(ids, (list, tuple)) else str(ids)
    return gpus_available(flag, ids)


def autocast(device, enabled: bool = True, dtype: torch.dtype | None = None):
    """Mixed-precision context: float16 on CUDA, bfloat16 on CPU (CPU autocast has no float16 speed-up).

    Returns a ``nullcontext`` when disabled so callers can always write ``with autocast(dev, args.amp):``.
    """
    if not enabled:
        return contextlib.nullcontext()
    device_type = torch.device(device).type if not isinstance(device, torch.device) else device.type
    if dtype is None:
        dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device_type, dtype=dtype)


def grad_scaler(device, enabled: bool = True):
    """A ``GradScaler`` that is only active for float16 AMP on CUDA (bfloat16 on CPU needs no scaling)."""
    device_type = torch.device(device).type
    return torch.amp.GradScaler(device_type, enabled=enabled and device_type == "cuda")


def check_finite(loss, step, hint: str = "") -> None:
    """Raise ``UserError`` if ``loss`` is NaN or infinite, naming the step and the usual causes.

    This reads the value on the host (a device sync); call it where the loop already syncs, e.g. next
    to ``loss.item()`` for logging / the progress meter, not as an extra sync every step.
    """
    value = float(loss.detach().float().item()) if torch.is_tensor(loss) else float(loss)
    if np.isfinite(value):
        return
    msg = (f"loss is {value} at step {step}. Likely causes: learning rate too high (lower --lr or add "
           f"warm-up), float16 overflow with AMP (disable AMP or use bfloat16), or bad input data "
           f"(NaN/inf pixels or labels out of range).")
    if hint:
        msg += " " + hint
    raise UserError(msg)


def to_channels_last(module_or_tensor, device=None):
    """Convert a 4-D model / tensor to channels_last memory format (faster convolutions on CUDA / AMP).

    On CPU this is harmless; only 4-D tensors are converted.
    """
    if isinstance(module_or_tensor, torch.nn.Module):
        return module_or_tensor.to(memory_format=torch.channels_last)
    if torch.is_tensor(module_or_tensor) and module_or_tensor.dim() == 4:
        return module_or_tensor.contiguous(memory_format=torch.channels_last)
    return module_or_tensor


def add_precision_args(parser, amp: bool = True) -> None:
    """The two GPU-speed switches every training entry point offers: ``--amp`` (omit with ``amp=False`` where the
    original already has its own switch, e.g. PaCo's ``--fp16``) and ``--channels-last``."""
    if amp:
        parser.add_argument("--amp", action="store_true",
                            help="mixed precision: float16 autocast with loss scaling on CUDA, bfloat16 autocast "
                                 "on CPU; the losses are computed in float32")
    parser.add_argument("--channels-last", dest="channels_last", action="store_true",
                        help="channels_last memory format for the model and its input batches (faster convolutions "
                             "with --amp on tensor-core GPUs)")


class MixedPrecision:
    """What ``--amp`` / ``--channels-last`` mean for one training loop, so every method applies them alike::

        precision = MixedPrecision(device, args.amp, args.channels_last)
        model = precision.prepare(model)                 # channels_last parameters (a no-op when off)
        with precision.autocast():
            z = model(precision.input(images))
        loss = criterion(z.float())                       # losses in float32, outside autocast
        precision.backward_step(loss, optimizer)          # GradScaler on CUDA float16, plain step otherwise

    ``scaler`` is the ``GradScaler`` (disabled unless float16 on CUDA); checkpoint its ``state_dict()``.
    """

    def __init__(self, device, amp: bool = False, channels_last: bool = False):
        self.device = torch.device(device)
        self.amp, self.channels_last = bool(amp), bool(channels_last)
        self.scaler = grad_scaler(self.device, self.amp)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return to_channels_last(model) if self.channels_last else model

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return to_channels_last(x) if self.channels_last else x

    def autocast(self):
        return autocast(self.device, self.amp)

    def backward_step(self, loss: torch.Tensor, optimizer) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
