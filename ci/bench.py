#!/usr/bin/env python
"""Performance benchmark of the five methods' losses and of the input pipelines (not part of the test run).

    python ci/bench.py                        # full sizes (the papers'), a few minutes on 2 CPU cores
    python ci/bench.py --quick --out b.json   # small sizes, seconds (tests/common/test_bench.py)
    python ci/bench.py --sections loss --repeats 7 --out bench.json

Sections (``--sections``, comma-separated):

* ``loss`` — forward + backward time of each method's loss module at the paper's sizes, median of ``--repeats``
  runs after one warm-up, with ``--threads`` intra-op threads (default 1) on the CPU and also on CUDA when present;
  each as a ratio over a plain vectorised InfoNCE over tensors of the same sizes (the ``baseline`` column says
  which). A method whose loss cannot be imported or built gets a ``not available: <reason>`` row; one that fails
  while running a ``failed: <reason>`` row. Peak memory columns (``peak MiB``, ``InfoNCE peak MiB``; off with
  ``--no-memory``): on the CPU, each side of each case is built again in a fresh Python process (so no earlier case's
  freed-but-kept heap hides its allocations) and the growth of the process's peak resident set over the same calls as
  the timing (one warm-up + ``--repeats``) is reported: the Linux high-water mark ``VmHWM`` is reset to the current
  RSS right before the first call (``/proc/self/clear_refs``) and read after the last; where that reset is refused,
  the growth of ``getrusage(RUSAGE_SELF).ru_maxrss`` over the calls (an under-estimate when building the inputs
  peaked higher). It is what the calls need beyond their inputs: intermediates, autograd buffers and the
  gradients. On CUDA: ``torch.cuda.max_memory_allocated`` over the calls, in process.
* ``input`` — images/s of the per-image PIL pipelines (SimCLR two views, CACR 5 views, AttentioNCE 6 views, PaCo
  RandAugment + SimCLR pair) through a DataLoader with ``--workers`` workers, and of the batched tensor pipelines
  (``common.augment.batched``) on the same loader: applied in the main process (``--threads-input`` threads) and
  inside the workers (``collate_fn``). 32×32 CIFAR-like images.
* ``overhead`` — one training step (forward + backward + SGD step) of a method's model wrapper against the bare
  backbone's forward + backward on the same views (the wrapper's extra encoders, queues and loss).

Prints one table per section and writes everything to ``--out`` (JSON: ``meta``, ``loss_cost``,
``input_pipeline``, ``method_overhead``; every row has ``status`` = ``ok`` / ``not available: …`` / ``failed: …``).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # works from a plain checkout too, not only after `pip install -e .`
    sys.path.append(str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# The papers' sizes and the --quick ones (seconds on 2 cores).
FULL = {
    "paco": dict(B=128, K=8192, d=128, C=1000),
    "cacr": dict(V=5, B=128, D=128),
    "ascl": dict(B=256, Q=4096, D=128),
    "mcl_memory": dict(N=2, B=256, neg_k=8192, pos_k=1, D=128, rep_dim=512, n_data=131072),
    "mcl_moco": dict(N=2, B=256, K=65536, D=128),
    "attentionce": dict(V=6, B=256, D=128),
}
QUICK = {
    "paco": dict(B=16, K=256, d=32, C=20),
    "cacr": dict(V=5, B=16, D=32),
    "ascl": dict(B=16, Q=256, D=32),
    "mcl_memory": dict(N=2, B=16, neg_k=256, pos_k=1, D=32, rep_dim=64, n_data=1024),
    "mcl_moco": dict(N=2, B=16, K=256, D=32),
    "attentionce": dict(V=6, B=16, D=32),
}


# ================================================================================================ timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_median(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median wall time (s) of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_MIB = 1024 * 1024


def _proc_status_kib(field: str) -> int | None:
    """``VmHWM`` / ``VmRSS`` of this process in KiB from ``/proc/self/status`` (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_growth(fn: Callable[[], None], device: torch.device, calls: int) -> tuple[float, str]:
    """Peak memory (bytes) that ``calls`` calls of ``fn`` need above what is resident before the first call, and
    how it was measured. CPU: growth of the process's peak RSS (run it in a fresh process for an honest number: a
    heap grown by earlier work is reused without touching new pages). CUDA: peak of allocated memory."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(calls):
            fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before), "cuda max_memory_allocated"
    if _reset_peak_rss():
        before = _proc_status_kib("VmRSS")
        for _ in range(calls):
            fn()
        return float(max(0, _proc_status_kib("VmHWM") - before) * 1024), "VmHWM growth (reset before the calls)"
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss       # KiB on Linux
    for _ in range(calls):
        fn()
    return float((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024), "ru_maxrss growth"


def _loss_case(key: str):
    for case in LOSS_CASES:
        if case[0] == key:
            return case
    raise KeyError(f"no loss case {key!r}; choose from {', '.join(c[0] for c in LOSS_CASES)}")


def _warm_runtime() -> None:
    """One tiny forward + backward through the usual ops, so that the one-time set-up of a fresh process (autograd
    engine, kernel libraries' buffers: several MiB) is not counted as the first case call's memory."""
    x = torch.randn(8, 4, requires_grad=True)
    z = F.normalize(x, dim=1)
    logits = torch.cat([z @ z.t(), torch.bmm(z[None], z.t()[None])[0]], 1).masked_fill(torch.eye(8, 16) > 0, -1e9)
    loss = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long)) + logits.softmax(1).logsumexp(1).sum()
    loss.backward()
    del x, z, logits, loss
    gc.collect()


def _peak_in_this_process(key: str, side: str, sizes: dict, repeats: int, threads: int) -> dict:
    """Entry of the fresh process: build one loss case, measure one side's peak memory over 1 + ``repeats``
    calls (the timing's warm-up and timed runs)."""
    torch.set_num_threads(threads)
    _warm_runtime()
    torch.manual_seed(0)
    _, _, build, _ = _loss_case(key)
    method, baseline, _ = build(sizes, torch.device("cpu"))
    fn = method if side == "method" else baseline
    del method, baseline
    peak, how = peak_memory_growth(fn, torch.device("cpu"), 1 + repeats)
    return {"peak_bytes": peak, "how": how}


def peak_memory_fresh_process(key: str, side: str, sizes: dict, repeats: int, threads: int,
                              timeout: float = 900.0) -> tuple[float, str]:
    """:func:`peak_memory_growth` of one side (``method`` / ``baseline``) of loss case ``key`` at ``sizes`` on the
    CPU, run in a fresh Python process. Raises RuntimeError with the child's last error line if it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peak-case", key, "--peak-side", side,
           "--peak-sizes", json.dumps(sizes), "--repeats", str(repeats), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"peak-memory process exited {proc.returncode}: {tail}")
    out = json.loads(lines[-1])
    return out["peak_bytes"], out["how"]


def _leaf(*shape, device, normalize_last=False, generator=None):
    x = torch.randn(*shape, device=device, generator=generator)
    if normalize_last:
        x = F.normalize(x, dim=-1)
    return x.requires_grad_(True)


def _unit(*shape, device, dim=-1):
    return F.normalize(torch.randn(*shape, device=device), dim=dim)


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Plain vectorised InfoNCE: q, k (A, D), negatives (M, D) → CE over [q·k, q·negatives] with the positive
    in column 0."""
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives.t()], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def nt_xent(z: torch.Tensor, n_views: int, temperature: float) -> torch.Tensor:
    """SimCLR NT-Xent over ``n_views`` views stacked as (V·B, D): positive = the next view of the same image,
    all other rows negatives (self excluded)."""
    n = z.shape[0]
    b = n // n_views
    logits = (z @ z.t()) / temperature
    logits = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    target = (torch.arange(n, device=z.device) + b) % n
    return F.cross_entropy(logits, target)


# ================================================================================================ loss cases
# Each builder returns (method_step, baseline_step, baseline description); a step runs forward + backward.
# Import errors propagate to the caller, which turns them into "not available" rows.

def _case_paco(s, device):
    from paco.losses import PaCoLoss

    B, K, d, C = s["B"], s["K"], s["d"], s["C"]
    loss_fn = PaCoLoss(alpha=0.05, beta=1.0, gamma=1.0, temperature=0.2, K=K, num_classes=C,
                       cls_num_list=torch.randint(1, 1280, (C,)).tolist()).to(device)
    q = _leaf(B, d, device=device)
    k, queue = _unit(B, d, device=device), _unit(K, d, device=device)
    logits = _leaf(B, C, device=device)
    labels = torch.randint(0, C, (2 * B + K,), device=device)

    def method():
        loss = loss_fn(torch.cat([F.normalize(q, dim=1), k, queue]), labels, logits)
        loss.backward()

    def baseline():                      # the same 2B + K contrast columns (PaCo keeps the self column too)
        qn = F.normalize(q, dim=1)
        info_nce(qn, k, torch.cat([qn, k, queue]), 0.2).backward()

    return method, baseline, f"InfoNCE {B} anchors x (1+{2 * B + K}) columns, d {d}"


def _case_cacr(s, device):
    from cacr.small_scale_experiments.losses import CACRLoss

    V, B, D = s["V"], s["B"], s["D"]
    loss_fn = CACRLoss(alpha=1.0, beta=1.0, tau_pos=1.0, tau_neg=0.9)
    raw = _leaf(V, B, D, device=device)

    def method():
        z = F.normalize(raw, dim=-1)
        out = loss_fn(list(z.unbind(0)))
        (out[0] if isinstance(out, (tuple, list)) else out).backward()

    def baseline():
        nt_xent(F.normalize(raw, dim=-1).reshape(V * B, D), V, 0.5).backward()

    return method, baseline, f"NT-Xent {V}x{B} views x {V * B} columns, D {D}"


def _case_ascl(s, device):
    from ascl.losses import ASCLLoss

    B, Q, D = s["B"], s["Q"], s["D"]
    loss_fn = ASCLLoss(dim=D, mem_size=Q, T1=0.1, T2=0.05, type="ascl", nn_num=1, model="moco").to(device)
    raw = _leaf(B, D, device=device)
    k = _unit(B, D, device=device)
    queue = _unit(Q, D, device=device)

    def method():
        out = loss_fn(F.normalize(raw, dim=1), k)
        (out.loss if hasattr(out, "loss") else out[0]).backward()

    def baseline():
        info_nce(F.normalize(raw, dim=1), k, queue, 0.1).backward()

    return method, baseline, f"MoCo InfoNCE {B} x (1+{Q}), D {D}"


def _case_mcl_memory(s, device):
    from mcl.losses.imagenet_sup_mcl_loss import SupMCLLoss

    N, B, neg_k, pos_k, D = s["N"], s["B"], s["neg_k"], s["pos_k"], s["D"]
    loss_fn = SupMCLLoss([s["rep_dim"]] * N, n_data=s["n_data"], feat_dim=D, tau=0.07, kd_T=3.0).to(device)
    loss_fn.train()
    reps = [_leaf(B, s["rep_dim"], device=device) for _ in range(N)]
    pos_idx = torch.cat([torch.randperm(s["n_data"], device=device)[:B, None],
                         torch.randint(0, s["n_data"], (B, pos_k), device=device)], 1)
    neg_idx = torch.randint(0, s["n_data"], (B, neg_k), device=device)
    memory = _unit(s["n_data"], D, device=device)
    head = torch.nn.Linear(s["rep_dim"], D).to(device)

    def method():
        losses = loss_fn(reps, pos_idx, neg_idx)
        sum(losses).backward()

    def baseline():                      # one network, the same gathered rows: CRD-style NCE over 1+pos_k+neg_k
        z = F.normalize(head(reps[0]), dim=1)
        rows = memory[torch.cat([pos_idx, neg_idx], 1)]                          # (B, K1, D)
        logits = torch.bmm(rows, z.unsqueeze(2)).squeeze(2) / 0.07
        F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=device)).backward()

    return method, baseline, f"1 network: NCE {B} x {1 + pos_k + neg_k} gathered memory rows, D {D}"


def _case_mcl_moco(s, device):
    from mcl.moco.losses import dequeue_and_enqueue, moco_mcl_loss

    N, B, K, D = s["N"], s["B"], s["K"], s["D"]
    raw = _leaf(N, B, D, device=device)
    k = _unit(N, B, D, device=device)
    queue = _unit(N, D, K, device=device, dim=1)
    ptr = torch.zeros(1, dtype=torch.long, device=device)

    def method():
        # a copy of the queue, as the builder passes: the loss keeps it for the backward pass
        _, vcl, soft_vcl, icl, soft_icl = moco_mcl_loss(F.normalize(raw, dim=-1), k, queue.clone(), 0.07)
        (vcl + soft_vcl + icl + soft_icl).backward()
        dequeue_and_enqueue(queue, ptr, k)

    def baseline():
        info_nce(F.normalize(raw[0], dim=1), k[0], queue[0].t(), 0.07).backward()

    return method, baseline, f"1 network: MoCo InfoNCE {B} x (1+{K}), D {D}"


def _case_attentionce(s, device):
    from attentionce.losses import AttentioNCE

    V, B, D = s["V"], s["B"], s["D"]
    loss_fn = AttentioNCE(temperature=0.5, d_pos=1.0, d_neg=1.0)
    raw = _leaf(V, B, D, device=device)

    def method():
        loss_fn(F.normalize(raw, dim=-1)).backward()

    def baseline():
        nt_xent(F.normalize(raw[:2], dim=-1).reshape(2 * B, D), 2, 0.5).backward()

    return method, baseline, f"NT-Xent 2x{B} anchor views x {2 * B} columns, D {D}"


LOSS_CASES = [
    ("paco", "PaCo (paco.losses.PaCoLoss)", _case_paco, "B {B}, K {K}, d {d}, C {C}"),
    ("cacr", "CACR (cacr.small_scale_experiments.losses.CACRLoss)", _case_cacr, "{V} views, B {B}, D {D}"),
    ("ascl", "ASCL (ascl.losses.ASCLLoss, moco)", _case_ascl, "B {B}, queue {Q}, D {D}"),
    ("mcl_memory", "MCL ImageNet memory (mcl.losses.imagenet_sup_mcl_loss.SupMCLLoss)", _case_mcl_memory,
     "N {N}, B {B}, neg_k {neg_k}, pos_k {pos_k}, D {D}, n_data {n_data}"),
    ("mcl_moco", "MCL MoCo (mcl.moco.losses)", _case_mcl_moco, "N {N}, B {B}, K {K}, D {D}"),
    ("attentionce", "AttentioNCE (attentionce.losses.AttentioNCE)", _case_attentionce, "{V} views, B {B}, D {D}"),
]


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()


def _failed_row(row: dict, status: str, exc: BaseException, verbose: bool, **extra) -> dict:
    """``row`` with ``status`` = ``<status>: <reason>`` ("not available" when a case cannot be built, "failed" when
    it breaks while running): a benchmark reports a broken method and goes on. ``verbose`` prints the traceback."""
    if verbose:
        traceback.print_exc()
    return {**row, "status": f"{status}: {_reason(exc)}", **extra}


def _loss_peaks(key: str, s: dict, device: torch.device, method, baseline, repeats: int, threads: int) -> dict:
    """The peak-memory fields of a loss row: ``method_peak_mib``, ``baseline_peak_mib``, ``peak_how``; on failure
    ``memory_status`` = ``failed: <reason>`` and the timing row stays."""
    try:
        if device.type == "cuda":
            (m, how), (b, _) = (peak_memory_growth(fn, device, 1 + repeats) for fn in (method, baseline))
        else:
            (m, how), (b, _) = (peak_memory_fresh_process(key, side, s, repeats, threads)
                                for side in ("method", "baseline"))
    except Exception as exc:
        return {"method_peak_mib": None, "baseline_peak_mib": None, "memory_status": f"failed: {_reason(exc)}"}
    if device.type == "cpu":
        how += ", fresh process per side"
    return {"method_peak_mib": m / _MIB, "baseline_peak_mib": b / _MIB, "peak_how": how, "memory_status": "ok"}


def bench_losses(sizes: dict, devices: list, repeats: int, threads: int, verbose: bool,
                 memory: bool = False) -> list[dict]:
    """One row per (loss case, device): timings and, with ``memory``, the peak memory of each side (see the
    module docstring; on the CPU every case is built again in fresh processes, so only ``LOSS_CASES`` entries)."""
    rows = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for key, label, build, config in LOSS_CASES:
            s = sizes[key]
            for device in devices:
                row = {"method": key, "loss": label, "config": config.format(**s), "device": str(device),
                       "threads": threads if device.type == "cpu" else None, "repeats": repeats}
                try:
                    torch.manual_seed(0)
                    method, baseline, description = build(s, device)
                except Exception as exc:  # the method folder is still being written: report, don't crash
                    rows.append(_failed_row(row, "not available", exc, verbose))
                    continue
                try:
                    method_s = time_median(method, device, repeats)
                    baseline_s = time_median(baseline, device, repeats)
                except Exception as exc:
                    rows.append(_failed_row(row, "failed", exc, verbose, baseline=description))
                    continue
                row = {**row, "status": "ok", "baseline": description, "method_ms": method_s * 1e3,
                       "baseline_ms": baseline_s * 1e3, "ratio": method_s / baseline_s}
                if memory:
                    row.update(_loss_peaks(key, s, device, method, baseline, repeats, threads))
                rows.append(row)
                del method, baseline
    finally:
        torch.set_num_threads(previous_threads)
    return rows


# ================================================================================================ input pipeline
def cifar_like_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` 32×32 RGB uint8 images with real structure: the embedded digits, tinted, offset and noised."""
    from common.data import build_dataset

    base = build_dataset("digits", None, "train").data.astype(np.float32)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), n)
    data = base[idx] * rng.uniform(0.2, 1.0, (n, 1, 1, 3)) + rng.uniform(0, 80, (n, 1, 1, 3))
    return np.clip(data + rng.normal(0, 20, data.shape), 0, 255).astype(np.uint8)


class ArrayImages(torch.utils.data.Dataset):
    """``(transform(PIL image), 0)`` for each H×W×3 uint8 array (a CIFAR-style in-memory dataset)."""

    def __init__(self, data: np.ndarray, transform):
        self.data, self.transform = data, transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), 0


class BatchedCollate:
    """Stack uint8 images and apply a batched pipeline inside the worker (CPU data loading)."""

    def __init__(self, views):
        self.views = views

    def __call__(self, samples):
        images = torch.stack([s[0] for s in samples])
        return self.views(images), torch.tensor([s[1] for s in samples])


def _loader_throughput(dataset, batch_size: int, workers: int, collate_fn=None, on_batch=None) -> float:
    """Images/s over one pass (the first batch, which pays for worker start-up, is not timed)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, collate_fn=collate_fn,
                                         persistent_workers=False, prefetch_factor=2 if workers else None)
    it = iter(loader)
    first = next(it)
    if on_batch is not None:
        on_batch(first)
    count, start = 0, time.perf_counter()
    for batch in it:
        if on_batch is not None:
            on_batch(batch)
        count += batch_size
    elapsed = time.perf_counter() - start
    del it, loader
    return count / elapsed if elapsed > 0 else float("nan")


def _per_image_pipelines():
    import common.augment as A

    cases = [
        ("SimCLR 2 views", 2, lambda: A.TwoCropsTransform(A.simclr_transform(32, "cifar10"))),
        ("CACR 5 views", 5, lambda: A.MultiViewTransform(
            A.simclr_transform(32, "cifar10", scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0,
                               blur=None), 5)),
        ("AttentioNCE 6 views", 6, lambda: A.MultiViewTransform(A.simclr_transform(32, "cifar10", blur=3), 6)),
    ]

    def paco():
        from paco.augmentations import train_transform

        return train_transform("randcls_sim", "lt", "cifar10", size=32)

    cases.append(("PaCo RandAugment (randcls_sim) 2 views", 2, paco))
    return cases


def _batched_pipelines():
    from common.augment import batched as BA

    return [
        ("SimCLR 2 views", 2, lambda: BA.batched_simclr_views(32, "cifar10")),
        ("CACR 5 views", 5, lambda: BA.batched_cacr_views(32, "cifar10")),
        ("AttentioNCE 6 views", 6, lambda: BA.batched_attentionce_views()),
    ]


def bench_input(n_images: int, batch_size: int, workers: int, threads_input: int, verbose: bool) -> list[dict]:
    from common.augment.batched import ToUint8Tensor

    data = cifar_like_images(n_images)
    rows = []
    base = {"images": n_images, "batch_size": batch_size, "workers": workers, "image_size": 32}
    for name, n_views, build in _per_image_pipelines():
        row = {**base, "pipeline": name, "kind": "per-image PIL", "where": f"{workers} DataLoader workers",
               "views": n_views}
        try:
            transform = build()
        except Exception as exc:
            rows.append(_failed_row(row, "not available", exc, verbose))
            continue
        try:
            ips = _loader_throughput(ArrayImages(data, transform), batch_size, workers)
            rows.append({**row, "status": "ok", "images_per_s": ips, "views_per_s": ips * n_views})
        except Exception as exc:
            rows.append(_failed_row(row, "failed", exc, verbose))
    raw = ArrayImages(data, ToUint8Tensor())
    for name, n_views, build in _batched_pipelines():
        views = build()
        batched = {**base, "pipeline": name, "kind": "batched", "views": n_views}
        generator = torch.Generator().manual_seed(0)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads_input)
        try:
            ips = _loader_throughput(raw, batch_size, workers, on_batch=lambda b: views(b[0], generator))
            rows.append({**batched, "status": "ok",
                         "where": f"main process, {threads_input} threads (loader: {workers} workers, uint8)",
                         "images_per_s": ips, "views_per_s": ips * n_views})
        except Exception as exc:
            rows.append(_failed_row(batched, "failed", exc, verbose))
        finally:
            torch.set_num_threads(previous)
        try:
            ips = _loader_throughput(raw, batch_size, workers, collate_fn=BatchedCollate(views))
            rows.append({**batched, "status": "ok", "where": f"{workers} DataLoader workers (collate_fn)",
                         "images_per_s": ips, "views_per_s": ips * n_views})
        except Exception as exc:
            rows.append(_failed_row(batched, "failed", exc, verbose))
    return rows


# ================================================================================================ method overhead
def _sgd_step(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    return step


def _wrapper_ascl(arch, batch, size, device, quick):
    from ascl.model import ASCL

    queue = 256 if quick else 4096
    model = ASCL("cifar10", "moco", dim=128, mem_size=queue, arch=arch, bn_splits=8).to(device).train()
    x1, x2 = (torch.randn(batch, 3, size, size, device=device) for _ in range(2))
    return _sgd_step(model, lambda: model(x1, x2).loss), f"ascl.model.ASCL moco, queue {queue}, 2x{batch} images"


def _wrapper_paco(arch, batch, size, device, quick):
    from common.backbones import build_backbone
    from paco.losses import PaCoLoss
    from paco.moco.builder import PaCo

    K, C = (256, 20) if quick else (8192, 100)
    model = PaCo(lambda num_classes: build_backbone(arch, num_classes=num_classes), dim=128, K=K, feat_dim=None,
                 num_classes=C).to(device).train()
    criterion = PaCoLoss(alpha=0.05, K=K, num_classes=C, cls_num_list=list(range(C, 0, -1))).to(device)
    x1, x2 = (torch.randn(batch, 3, size, size, device=device) for _ in range(2))
    labels = torch.randint(0, C, (batch,), device=device)

    def loss():
        features, target, sup_logits = model(x1, x2, labels)
        return criterion(features, target, sup_logits)

    return _sgd_step(model, loss), f"paco.moco.builder.PaCo + PaCoLoss, K {K}, C {C}, 2x{batch} images"


def _wrapper_mcl(arch, batch, size, device, quick):
    from common.backbones import build_backbone
    from mcl.moco.builder_mcl import MoCo

    K = 256 if quick else 65536
    model = MoCo(lambda num_classes: build_backbone(arch, num_classes=num_classes), number_net=2, dim=128,
                 K=K).to(device).train()
    x1, x2 = (torch.randn(batch, 3, size, size, device=device) for _ in range(2))

    def loss():
        out = model(x1, x2)
        return out[2] + out[3] + out[4] + out[5]

    return _sgd_step(model, loss), f"mcl.moco.builder_mcl.MoCo, 2 networks, K {K}, 2x{batch} images"


def _wrapper_cacr(arch, batch, size, device, quick):
    from cacr.small_scale_experiments.encoder import ProjectedBackbone
    from cacr.small_scale_experiments.losses import CACRLoss

    model = ProjectedBackbone(arch, 128).to(device).train()
    criterion = CACRLoss(tau_neg=0.9)
    views = torch.randn(5 * batch, 3, size, size, device=device)

    def loss():
        z = model(views)
        out = criterion(list(z.view(5, batch, -1).unbind(0)))
        return out[0] if isinstance(out, (tuple, list)) else out

    return _sgd_step(model, loss), f"cacr ProjectedBackbone + CACRLoss, 5x{batch} images"


def _wrapper_attentionce(arch, batch, size, device, quick):
    from attentionce.image.model import Model
    from attentionce.losses import AttentioNCE

    model = Model(128, arch).to(device).train()
    criterion = AttentioNCE()
    views = torch.randn(6 * batch, 3, size, size, device=device)

    def loss():
        _, out = model(views)
        return criterion(out.view(6, batch, -1))

    return _sgd_step(model, loss), f"attentionce.image.model.Model + AttentioNCE, 6x{batch} images"


METHOD_WRAPPERS = [("ascl", _wrapper_ascl), ("paco", _wrapper_paco), ("mcl_moco", _wrapper_mcl),
                   ("cacr", _wrapper_cacr), ("attentionce", _wrapper_attentionce)]


def bench_overhead(quick: bool, repeats: int, threads: int, device: torch.device, arch: str,
                   verbose: bool) -> list[dict]:
    """One training step (forward + backward + SGD) of each method's model wrapper and loss on random images,
    against the bare backbone's step on one batch of B images (same ``arch``, same B): the ratio is what the
    method adds (views, momentum encoders, queues, heads, loss)."""
    from common.backbones import build_backbone

    rows = []
    batch, size = (8, 32) if quick else (64, 32)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        backbone = build_backbone(arch).to(device).train()
        x = torch.randn(batch, 3, size, size, device=device)
        bare_s = time_median(_sgd_step(backbone, lambda: backbone(x).float().pow(2).mean()), device, repeats)
        rows.append({"method": "backbone", "status": "ok", "step_ms": bare_s * 1e3, "ratio": 1.0, "arch": arch,
                     "config": f"bare {arch} fwd+bwd+SGD, {batch} images {size}px"})
        for key, build in METHOD_WRAPPERS:
            row = {"method": key, "arch": arch}
            try:
                torch.manual_seed(0)
                step, config = build(arch, batch, size, device, quick)
            except Exception as exc:
                rows.append(_failed_row(row, "not available", exc, verbose))
                continue
            try:
                s = time_median(step, device, repeats)
                rows.append({**row, "status": "ok", "step_ms": s * 1e3, "ratio": s / bare_s, "config": config})
            except Exception as exc:
                rows.append(_failed_row(row, "failed", exc, verbose, config=config))
    finally:
        torch.set_num_threads(previous)
    return rows


# ================================================================================================ output
def _fmt(v, spec=".1f"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else format(v, spec)
    return str(v)


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    print(f"\n== {title}", flush=True)
    if not rows:
        print("(no rows)")
        return
    table = [[header for header, _, _ in columns]]
    for row in rows:
        if row.get("status", "ok") != "ok":
            cells = []
            for header, key, spec in columns:
                cells.append(_fmt(row.get(key), spec) if key in row and not key.endswith(("_ms", "_s", "ratio"))
                             else "-")
            cells[-1] = row["status"]
            table.append(cells)
        else:
            table.append([_fmt(row.get(key), spec) for _, key, spec in columns])
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for i, r in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), flush=True)
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds), for the test")
    parser.add_argument("--out", default=None, help="write the results as JSON to this file")
    parser.add_argument("--sections", default="loss,input,overhead",
                        help="comma-separated subset of loss,input,overhead (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 5, quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for the loss / overhead timings")
    parser.add_argument("--threads-input", type=int, default=1,
                        help="intra-op threads of the main process for the batched input pipeline (default 1: on a "
                             "shared 2-core machine a second OpenMP thread mostly waits for the busy core)")
    parser.add_argument("--arch", default=None, help="backbone of the method-overhead section (a common.backbones "
                                                     "name; default resnet32_option_a, quick resnet20_option_a)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the input pipeline")
    parser.add_argument("--images", type=int, default=None,
                        help="images per input-pipeline pass (default 4096, quick 64)")
    parser.add_argument("--batch-size", type=int, default=None, help="input-pipeline batch (default 256, quick 32)")
    parser.add_argument("--no-cuda", action="store_true", help="do not also time on CUDA when it is present")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of unavailable / failed rows")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory columns of the loss section (two fresh processes per case)")
    # internal: the fresh process of one peak-memory measurement (prints one JSON line)
    parser.add_argument("--peak-case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peak-side", choices=("method", "baseline"), default="method", help=argparse.SUPPRESS)
    parser.add_argument("--peak-sizes", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_case is not None:
        sizes = json.loads(args.peak_sizes) if args.peak_sizes else (QUICK if args.quick else FULL)[args.peak_case]
        print(json.dumps(_peak_in_this_process(args.peak_case, args.peak_side, sizes, args.repeats or 1,
                                               args.threads)), flush=True)
        return 0
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"loss", "input", "overhead"}
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from loss, input, overhead")
    repeats = args.repeats or (1 if args.quick else 5)
    n_images = args.images or (64 if args.quick else 4096)
    batch_size = args.batch_size or (32 if args.quick else 256)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))

    result = {
        "meta": {"quick": args.quick, "torch": torch.__version__, "python": platform.python_version(),
                 "machine": platform.machine(), "cpu_count": os.cpu_count(),
                 "cuda": torch.cuda.is_available(), "devices": [str(d) for d in devices], "repeats": repeats,
                 "threads": args.threads, "memory": not args.no_memory, "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 # the machine may be shared: timings are only comparable at similar load
                 "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                 "sections": sorted(sections)},
        "loss_cost": [], "input_pipeline": [], "method_overhead": [],
    }
    sizes = QUICK if args.quick else FULL
    if "loss" in sections:
        result["loss_cost"] = bench_losses(sizes, devices, repeats, args.threads, args.verbose,
                                           memory=not args.no_memory)
        memory_columns = [] if args.no_memory else [("peak MiB", "method_peak_mib", ".1f"),
                                                    ("InfoNCE peak MiB", "baseline_peak_mib", ".1f")]
        print_table(f"loss cost: forward+backward, median of {repeats}, {args.threads} CPU thread(s)",
                    result["loss_cost"],
                    [("method", "method", ""), ("config", "config", ""), ("device", "device", ""),
                     ("ms", "method_ms", ".2f"), ("InfoNCE ms", "baseline_ms", ".2f"), ("ratio", "ratio", ".2f")]
                    + memory_columns + [("baseline / status", "baseline", "")])
        if not args.no_memory:
            print(f"peak MiB: growth of the peak memory over the {1 + repeats} calls (warm-up + timed) above the "
                  "case's inputs; CPU: each side in a fresh process, peak RSS (VmHWM reset before the calls)")
            for row in result["loss_cost"]:
                if row.get("memory_status", "ok") != "ok":
                    print(f"  {row['method']} ({row['device']}) peak memory {row['memory_status']}")
    if "input" in sections:
        result["input_pipeline"] = bench_input(n_images, batch_size, args.workers, args.threads_input, args.verbose)
        print_table(f"input pipeline: {n_images} images 32x32, batch {batch_size}", result["input_pipeline"],
                    [("pipeline", "pipeline", ""), ("kind", "kind", ""), ("where", "where", ""),
                     ("images/s", "images_per_s", ".0f"), ("views/s", "views_per_s", ".0f"),
                     ("status", "status", "")])
    if "overhead" in sections:
        arch = args.arch or ("resnet20_option_a" if args.quick else "resnet32_option_a")
        result["method_overhead"] = bench_overhead(args.quick, repeats, args.threads, devices[0], arch, args.verbose)
        print_table("method overhead: one training step vs bare backbone", result["method_overhead"],
                    [("method", "method", ""), ("config", "config", ""), ("step ms", "step_ms", ".1f"),
                     ("ratio", "ratio", ".2f"), ("status", "status", "")])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(args.out) + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(args.out)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
