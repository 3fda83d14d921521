#!/usr/bin/env python
"""Training-step time of a torchvision ResNet-50 in fp32, with ``--amp`` and with ``--amp --channels-last``: what the
two switches every entry point has (``common.utils.MixedPrecision``) buy on this machine. Not part of the test run.

    python ci/bench_gpu.py                         # CUDA when present: batch 128 at 224 px, median of 20 steps
    python ci/bench_gpu.py --batch-size 256 --steps 50 --out gpu.json

One step = forward, cross-entropy, backward, SGD step on a synthetic batch already on the device, timed after
``--warmup`` untimed steps (cuDNN autotuning, allocator warm-up) with the device synchronised; each mode starts from
a freshly initialised network with the same seed. AMP is float16 autocast with loss scaling on CUDA and bfloat16
autocast on CPU. Without CUDA the script still runs, on the CPU with a tiny batch, and says so: the CPU numbers
only show that the paths work (bfloat16 and channels_last are rarely faster there).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # works from a plain checkout too, not only after `pip install -e .`
    sys.path.append(str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

from common.utils import MixedPrecision  # noqa: E402

MODES = (("fp32", False, False), ("AMP", True, False), ("AMP + channels_last", True, True))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(amp: bool, channels_last: bool, device: torch.device, batch_size: int, image_size: int, steps: int,
              warmup: int, arch: str = "resnet50", seed: int = 0) -> list[float]:
    """Seconds of each of ``steps`` timed training steps of a freshly initialised torchvision ``arch``."""
    torch.manual_seed(seed)
    precision = MixedPrecision(device, amp, channels_last)
    model = precision.prepare(getattr(torchvision.models, arch)(num_classes=1000).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(seed)
    images = precision.input(torch.randn(batch_size, 3, image_size, image_size, device=device, generator=generator))
    labels = torch.randint(0, 1000, (batch_size,), device=device, generator=generator)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = model(images)
        precision.backward_step(F.cross_entropy(logits.float(), labels), optimizer)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--device", default=None, help="cuda / cuda:1 / cpu (default: cuda when present)")
    parser.add_argument("--arch", default="resnet50", help="torchvision.models constructor (default resnet50)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default 128 on CUDA, 2 on CPU)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default 224 on CUDA, 96 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per mode (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA was requested but is not available; use --device cpu")
    on_gpu = device.type == "cuda"
    batch_size = args.batch_size or (128 if on_gpu else 2)
    image_size = args.image_size or (224 if on_gpu else 96)
    steps = args.steps or (20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
        where = f"CUDA run on {torch.cuda.get_device_name(device)} (AMP = float16 autocast + loss scaling)"
    else:
        where = (f"CPU run ({torch.get_num_threads()} thread(s); no CUDA device used): AMP = bfloat16 autocast. "
                 f"A tiny batch, to show the paths work; run this on a GPU machine for the numbers that matter")
    print(f"{args.arch} training step, batch {batch_size}, {image_size}x{image_size}, median of {steps} steps after "
          f"{warmup} warm-up, torch {torch.__version__}")
    print(where)
    rows = []
    for name, amp, channels_last in MODES:
        times = time_mode(amp, channels_last, device, batch_size, image_size, steps, warmup, args.arch)
        median = statistics.median(times)
        rows.append({"mode": name, "amp": amp, "channels_last": channels_last, "median_ms": median * 1e3,
                     "images_per_s": batch_size / median, "times_ms": [t * 1e3 for t in times]})
    base = rows[0]["median_ms"]
    print(f"\n{'mode':<22}{'ms/step':>10}{'images/s':>11}{'speed-up':>10}")
    for row in rows:
        row["speedup"] = base / row["median_ms"]
        print(f"{row['mode']:<22}{row['median_ms']:>10.1f}{row['images_per_s']:>11.1f}{row['speedup']:>9.2f}x")
    if args.out:
        result = {"arch": args.arch, "device": str(device), "cuda": on_gpu, "where": where, "batch_size": batch_size,
                  "image_size": image_size, "steps": steps, "warmup": warmup, "torch": torch.__version__,
                  "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
