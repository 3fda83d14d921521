"""One distributed set-up for the originals' ``mp.spawn`` flags and for ``torchrun``; gathers; shuffle-BN.

Launch paths (all end in ``main_worker(local_index, args)`` calling :func:`init_distributed`):

* ``--multiprocessing-distributed`` (moco style): one process per GPU on this node
  (``torch.cuda.device_count()``), or, without CUDA, ``--nproc-per-node`` CPU processes using gloo, so
  the same launch path runs on a laptop. World size = processes per node × ``--world-size`` (number of
  nodes), global rank = ``--rank`` (node rank) × processes per node + local index.
* ``torchrun`` / ``torch.distributed.launch``: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT`` are read from the environment (multi-node rendezvous is torchrun's job); one process.
* Neither, ``--world-size`` ≤ 1: a single process, no process group; every gather below is the identity.
* Neither, ``--world-size`` > 1: one process per node joining ``--dist-url`` with ``--rank``.

``nccl`` is switched to ``gloo`` automatically when the run is on CPU.
"""
from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from urllib.parse import urlparse

import torch
import torch.distributed as dist

from common.utils import UserError, as_user_error, gpus_available

# The placeholder address of the moco-style defaults; on a single node it means "this machine".
_MOCO_PLACEHOLDER_HOST = "224.66.41.62"

DEFAULTS = {
    "world_size": -1,
    "rank": -1,
    "dist_url": "tcp://224.66.41.62:23456",
    "dist_backend": "nccl",
    "gpu": None,
    "multiprocessing_distributed": False,
    "nproc_per_node": 1,
    "dist_timeout": 600,
}


def add_distributed_args(parser: argparse.ArgumentParser, **defaults) -> argparse.ArgumentParser:
    """Add the originals' distributed flags; ``defaults`` overrides per method (e.g. PaCo
    ``world_size=1, rank=0, dist_url='tcp://localhost:9996', multiprocessing_distributed=True``).

    Flags a method already defined are left alone. ``--multiprocessing-distributed`` also has a
    ``--no-multiprocessing-distributed`` form so a default of True can be switched off.
    """
    d = dict(DEFAULTS)
    unknown = set(defaults) - set(d)
    if unknown:
        raise ValueError(f"unknown distributed defaults: {sorted(unknown)}")
    d.update(defaults)
    existing = {s for a in parser._actions for s in a.option_strings}

    def add(flag, **kw):
        if flag not in existing:
            parser.add_argument(flag, **kw)

    add("--world-size", default=d["world_size"], type=int,
        help="number of nodes for distributed training (world size = nodes x processes per node)")
    add("--rank", default=d["rank"], type=int, help="node rank for distributed training")
    add("--dist-url", default=d["dist_url"], type=str,
        help="url used to set up distributed training ('env://' reads MASTER_ADDR/PORT); on a single node "
             "the moco placeholder address is replaced by a free local port")
    add("--dist-backend", default=d["dist_backend"], type=str,
        help="distributed backend (nccl on GPU; switched to gloo automatically on CPU)")
    add("--gpu", default=d["gpu"], type=int,
        help="GPU id to use (single-process runs; without CUDA a notice and the CPU)")
    add("--multiprocessing-distributed", default=d["multiprocessing_distributed"],
        action=argparse.BooleanOptionalAction,
        help="launch N processes per node (N = number of GPUs, or --nproc-per-node on CPU), "
             "the fastest way to use PyTorch for single-node or multi-node training")
    add("--dist-timeout", default=d["dist_timeout"], type=float, metavar="SECONDS",
        help="give up joining the process group (and any collective) after this long; a process still waiting "
             "after 10 s says what it waits for")
    add("--nproc-per-node", default=d["nproc_per_node"], type=int,
        help="processes per node when there is no GPU (CPU + gloo); ignored when CUDA is available")
    return parser


# --------------------------------------------------------------------------------------------- launch

def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_env() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _use_cuda(args) -> bool:
    device = getattr(args, "device", None)
    if device is not None and torch.device(device).type == "cpu":
        return False
    return torch.cuda.is_available()


def processes_per_node(args) -> int:
    """GPUs on this node when CUDA is used, else ``--nproc-per-node``."""
    if _use_cuda(args):
        return max(torch.cuda.device_count(), 1)
    return max(int(getattr(args, "nproc_per_node", 1) or 1), 1)


def _resolve_single_node_url(args, nodes: int) -> None:
    """On one node, make the rendezvous address local: the moco placeholder host becomes 127.0.0.1 with a
    free port, and ``env://`` without MASTER_ADDR gets 127.0.0.1 and a free port."""
    if nodes > 1:
        return
    url = args.dist_url or "env://"
    if url.startswith("env://"):
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(find_free_port()))
    elif urlparse(url).hostname == _MOCO_PLACEHOLDER_HOST:
        args.dist_url = f"tcp://127.0.0.1:{find_free_port()}"


def launch(main_worker, args) -> None:
    """Run ``main_worker(local_index, args)`` in every process of this node.

    ``main_worker`` must be a module-level function (it is pickled by ``mp.spawn``) and the entry script
    must guard its call with ``if __name__ == '__main__'``. ``args.ngpus_per_node`` is set to the number
    of processes on this node (the moco name, also used for the per-process batch size).
    """
    gpus_available("--gpu", getattr(args, "gpu", None))  # without CUDA: one notice line, then the CPU
    if _torchrun_env():
        args.multiprocessing_distributed = False
        args.ngpus_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        main_worker(int(os.environ["LOCAL_RANK"]), args)
        return
    nprocs = processes_per_node(args)
    args.ngpus_per_node = nprocs
    if getattr(args, "multiprocessing_distributed", False):
        nodes = args.world_size if args.world_size and args.world_size > 0 else 1
        if nodes > 1 and args.rank < 0:
            raise UserError("--multiprocessing-distributed with --world-size > 1 needs --rank (this node's rank)")
        _resolve_single_node_url(args, nodes)
        import shutil
        import tempfile
        import torch.multiprocessing as mp
        error_dir = tempfile.mkdtemp(prefix="cl-spawn-errors-")
        try:
            mp.spawn(_spawned_worker, nprocs=nprocs, args=(main_worker, args, error_dir), join=True)
        except mp.ProcessExitedException as e:
            # every rank usually meets the same bad input: print each distinct message once, in rank order
            messages = []
            names = [n for n in os.listdir(error_dir) if not n.endswith(".tmp")]
            for name in sorted(names, key=lambda n: int(n.removeprefix("rank"))):
                with open(os.path.join(error_dir, name), encoding="utf-8") as f:
                    message = f.read()
                if message not in messages:
                    messages.append(message)
            for message in messages:
                print(f"error: {message}", file=sys.stderr, flush=True)
            if e.exit_code in (2, 130):   # a worker met a user error (or was interrupted)
                sys.exit(e.exit_code)
            raise
        finally:
            shutil.rmtree(error_dir, ignore_errors=True)
    else:
        args.ngpus_per_node = 1
        gpu = getattr(args, "gpu", None)
        main_worker(gpu if gpu is not None else 0, args)


def _spawned_worker(index, main_worker, args, error_dir):
    """Entry of each ``mp.spawn`` process: a ``UserError`` exits 2 with its message left in ``error_dir`` for the
    parent, which prints each distinct message once as ``error: ...`` (not one line per rank, and not a
    traceback relayed through the parent)."""
    try:
        main_worker(index, args)
    except KeyboardInterrupt:
        sys.exit(130)
    except (UserError, RuntimeError) as e:
        user_error = as_user_error(e)
        if user_error is None:
            raise
        if os.environ.get("CL_TRACEBACK"):
            import traceback
            traceback.print_exc()
        path = os.path.join(error_dir, f"rank{index}")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(str(user_error))
        os.replace(path + ".tmp", path)   # the parent never reads half a message
        sys.exit(2)


def init_distributed(args, local_rank: int = 0) -> torch.device:
    """Join the process group (if any) and pick this process's device.

    Sets ``args.rank`` (global), ``args.world_size`` (processes), ``args.local_rank``, ``args.distributed``,
    ``args.device`` (torch.device) and ``args.gpu`` (CUDA index or None). Returns the device.
    """
    use_cuda = _use_cuda(args)
    backend = getattr(args, "dist_backend", None) or ("nccl" if use_cuda else "gloo")
    if not use_cuda and backend == "nccl":
        backend = "gloo"
    init_method = getattr(args, "dist_url", None) or "env://"

    if _torchrun_env():
        rank = int(os.environ["RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        init_method = "env://"
        distributed = world_size > 1
    elif getattr(args, "multiprocessing_distributed", False):
        per_node = getattr(args, "ngpus_per_node", None) or processes_per_node(args)
        nodes = args.world_size if args.world_size and args.world_size > 0 else 1
        node_rank = args.rank if args.rank is not None and args.rank >= 0 else 0
        if init_method.startswith("env://") and "RANK" in os.environ and args.rank < 0:
            node_rank = int(os.environ["RANK"])
        rank = node_rank * per_node + local_rank
        world_size = per_node * nodes
        distributed = True
    else:
        world_size = args.world_size if args.world_size and args.world_size > 0 else 1
        if init_method.startswith("env://") and "WORLD_SIZE" in os.environ and args.world_size < 0:
            world_size = int(os.environ["WORLD_SIZE"])
        rank = args.rank if args.rank is not None and args.rank >= 0 else 0
        if init_method.startswith("env://") and "RANK" in os.environ and args.rank < 0:
            rank = int(os.environ["RANK"])
        distributed = world_size > 1

    if use_cuda:
        gpu = local_rank if distributed or getattr(args, "gpu", None) is None else args.gpu
        torch.cuda.set_device(gpu)
        device = torch.device("cuda", gpu)
    else:
        gpu = None
        device = torch.device("cpu")
        per_node = getattr(args, "ngpus_per_node", 1) or 1
        if distributed and per_node > 1:
            # share the cores between the local processes instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))

    if distributed and not (dist.is_available() and dist.is_initialized()):
        import datetime
        import threading
        timeout = float(getattr(args, "dist_timeout", None) or DEFAULTS["dist_timeout"])
        where = init_method if not init_method.startswith("env://") else \
            f"env:// ({os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')})"
        waiting = threading.Timer(10.0, lambda: print(
            f"rank {rank}: still waiting for the other {world_size - 1} process(es) to join at {where} (backend "
            f"{backend}); giving up after --dist-timeout {timeout:.0f} s", file=sys.stderr, flush=True))
        waiting.daemon = True
        waiting.start()
        try:
            dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size, rank=rank,
                                    timeout=datetime.timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as e:
            raise UserError(f"could not join the process group at {where} (backend {backend}, rank "
                            f"{rank}/{world_size}): {str(e).splitlines()[0]}. Check --dist-url / MASTER_ADDR / "
                            "MASTER_PORT, that every node uses the same --world-size and that all of them were "
                            "started (--dist-timeout sets how long to wait)") from None
        finally:
            waiting.cancel()

    args.rank = rank
    args.world_size = world_size
    args.local_rank = local_rank
    args.distributed = distributed
    args.dist_backend = backend
    args.device = device
    args.gpu = gpu
    return device


def per_process_batch_size(batch_size: int, args) -> int:
    """The originals' split of the global batch over the processes of one node (moco: ``batch / ngpus``)."""
    if not getattr(args, "distributed", False):
        return batch_size
    per_node = getattr(args, "ngpus_per_node", 1) or 1
    local = int(batch_size / per_node)
    if local < 1:
        raise UserError(f"--batch-size {batch_size} is smaller than the {per_node} processes per node")
    return local


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- queries

def is_dist_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def rank0_print(*args, **kwargs) -> None:
    if is_main_process():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def barrier() -> None:
    if is_dist_initialized() and get_world_size() > 1:
        dist.barrier()


# ------------------------------------------------------------------------------------------- gathers

@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, no gradient.

    World size 1 → ``tensor`` itself.
    """
    world_size = get_world_size()
    if world_size == 1:
        return tensor
    tensors_gather = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(tensors_gather, tensor.contiguous(), async_op=False)
    return torch.cat(tensors_gather, dim=0)


@torch.no_grad()
def concat_all_gather_uneven(tensor: torch.Tensor) -> torch.Tensor:
    """Like :func:`concat_all_gather` but the first dimension may differ between ranks (evaluation)."""
    world_size = get_world_size()
    if world_size == 1:
        return tensor
    n = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    out = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(out, padded.contiguous())
    return torch.cat([o[:s] for o, s in zip(out, sizes)], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        world_size = get_world_size()
        ctx.rank = get_rank()
        ctx.local_size = tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output):
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_size
        return grad[start: start + ctx.local_size]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from all ranks → (world·B, ...) with gradient to every rank's slice.

    Backward sums the incoming gradient over ranks (all-reduce) and returns this rank's slice, i.e. the
    gradient of Σ_r L_r, where L_r is the loss computed on rank r. DDP then *averages* parameter gradients
    over the W ranks, so the parameters receive the gradient of (1/W)·Σ_r L_r. Hence the gradients equal
    the single-process ones when the single-process loss is the mean of the per-rank losses: e.g. each rank
    averages its loss over its own B anchors (global loss = mean over all W·B anchors), or every rank
    computes the same full-batch loss. World size 1 → identity.
    """
    if get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


@torch.no_grad()
def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new tensor; identity copy at world size 1)."""
    out = tensor.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= get_world_size()
    return out


@torch.no_grad()
def batch_shuffle_ddp(x: torch.Tensor):
    """MoCo shuffle-BN: gather the batch from all ranks, permute it with a permutation drawn on rank 0 and
    broadcast, hand each rank its slice of the permuted batch. Returns ``(x_shuffled_local, idx_unshuffle)``.

    At world size 1 the batch is still permuted (same random permutation semantics as one GPU of a
    shuffled batch; matters for SplitBatchNorm); :func:`batch_unshuffle_ddp` restores the order.
    """
    batch_size_this = x.shape[0]
    x_gather = concat_all_gather(x)
    batch_size_all = x_gather.shape[0]
    num_gpus = batch_size_all // batch_size_this

    idx_shuffle = torch.randperm(batch_size_all, device=x.device)
    if get_world_size() > 1:
        dist.broadcast(idx_shuffle, src=0)
    idx_unshuffle = torch.argsort(idx_shuffle)
    gpu_idx = get_rank()
    idx_this = idx_shuffle.view(num_gpus, -1)[gpu_idx]
    return x_gather[idx_this], idx_unshuffle


@torch.no_grad()
def batch_unshuffle_ddp(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle_ddp` for the (encoded) local batch ``x``."""
    batch_size_this = x.shape[0]
    x_gather = concat_all_gather(x)
    batch_size_all = x_gather.shape[0]
    num_gpus = batch_size_all // batch_size_this
    gpu_idx = get_rank()
    idx_this = idx_unshuffle.view(num_gpus, -1)[gpu_idx]
    return x_gather[idx_this]


# ----------------------------------------------------------------------------------- model and data

def wrap_ddp(model: torch.nn.Module, args, **ddp_kwargs) -> torch.nn.Module:
    """Move ``model`` to ``args.device`` and wrap it in DDP when ``args.distributed``
    (``device_ids=[args.gpu]`` on CUDA, no device ids on CPU). Non-distributed → the model itself."""
    device = getattr(args, "device", None) or torch.device("cpu")
    model = model.to(device)
    if not getattr(args, "distributed", False):
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    if torch.device(device).type == "cuda":
        return DDP(model, device_ids=[args.gpu], **ddp_kwargs)
    return DDP(model, **ddp_kwargs)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / DataParallel (for saving state dicts without the ``module.`` prefix)."""
    return model.module if hasattr(model, "module") and isinstance(
        model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else model


def module_state_dict(model: torch.nn.Module) -> dict:
    """The model's state dict with the ``module.`` keys of a DDP model, whatever the wrapping here: the originals
    trained under DDP, so their checkpoints (and the scripts reading them, e.g. MoCo's ``main_lincls.py`` selecting
    ``module.encoder_q.*``) have these keys."""
    return {"module." + k: v for k, v in unwrap_model(model).state_dict().items()}


def per_process_workers(workers: int, args) -> int:
    """The originals' split of the data-loading workers of one node (``-j``) over its processes, rounded up."""
    return int(math.ceil(workers / max(getattr(args, "ngpus_per_node", 1) or 1, 1)))


def distributed_sampler(dataset, args, shuffle: bool = True, drop_last: bool = False, seed: int = 0):
    """``DistributedSampler`` over the run's ranks, or ``None`` when not distributed (then build the loader
    with ``shuffle=(sampler is None)`` like the originals). Call ``sampler.set_epoch(epoch)`` every epoch."""
    if not getattr(args, "distributed", False):
        return None
    from torch.utils.data.distributed import DistributedSampler
    return DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(),
                              shuffle=shuffle, drop_last=drop_last, seed=seed)


def rank_split_sampler(dataset, shuffle: bool = True, drop_last: bool = True, seed: int = 0):
    """``DistributedSampler`` over the current process group, also when there is none (one replica).

    One sampler for every world size makes the global batches independent of the number of processes:
    with drop_last the epoch's permutation depends only on (seed, epoch), and process r of W takes the
    samples r, r+W, r+2W, … of each global batch (so ``concat_all_gather`` returns the global batch in
    rank-major order, a fixed permutation of the single-process batch). Call ``set_epoch`` every epoch."""
    from torch.utils.data.distributed import DistributedSampler
    return DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=shuffle,
                              drop_last=drop_last, seed=seed)


def set_sampler_epoch(sampler, epoch: int) -> None:
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
