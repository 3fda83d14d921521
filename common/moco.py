"""The MoCo v2 encoder pair, built the same way by the queue-MoCo methods (ASCL's ImageNet builder, CACR's
large-scale builder, MoCo-MCL's N pairs) as in facebookresearch/moco's ``builder.py``."""
from __future__ import annotations

import torch
import torch.nn as nn


def moco_encoder_pair(base_encoder, dim: int, mlp: bool = False) -> tuple[nn.Module, nn.Module]:
    """``(encoder_q, encoder_k)``: ``base_encoder(num_classes=dim)`` twice (its ``fc`` outputs ``dim``). ``mlp``: MoCo
    v2's head, a hidden ``Linear(d, d)`` + ReLU in front of each ``fc``. The key encoder starts as a copy of the query
    encoder and gets no gradient (a momentum update moves it).

    The order of construction is the original's (query, key, then the query's and the key's hidden layers), so a
    seeded run draws the same initial weights, and the module names (``fc.0``, ``fc.2``) load its checkpoints."""
    encoder_q = base_encoder(num_classes=dim)
    encoder_k = base_encoder(num_classes=dim)
    if mlp:
        for encoder in (encoder_q, encoder_k):
            dim_mlp = encoder.fc.weight.shape[1]
            encoder.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), encoder.fc)
    for param_q, param_k in zip(encoder_q.parameters(), encoder_k.parameters()):
        param_k.data.copy_(param_q.data)
        param_k.requires_grad = False
    return encoder_q, encoder_k


class QueueSnapshot:
    """The queue as one step's forward saw it, for that step's backward after the enqueue has overwritten it.

    The original builders pass ``self.queue.clone()`` to the loss every step. At K = 65,536 that is a fresh
    32 MiB tensor, which the C allocator maps from the kernel page by page (8,193 page faults per step on this
    project's CPU, ``compare_originals.py``). Here one buffer is refilled each step instead, as long as no graph
    that saved it is still waiting for its backward; two forwards before one backward (gradient accumulation)
    get a fresh buffer each. ``copy_of`` hands out the copy and ``keep_until_backward`` marks it in use until
    the backward of the node that saved it has run. Should a retained graph run its backward again after
    the buffer was refilled, autograd's in-place check raises: a stale queue is never used silently.
    """

    def __init__(self):
        self._buffer: torch.Tensor | None = None
        self._holders = 0          # graphs that saved the current buffer and have not run their backward

    @torch.no_grad()
    def copy_of(self, queue: torch.Tensor) -> torch.Tensor:
        buffer = self._buffer
        if (buffer is None or self._holders or buffer.shape != queue.shape or buffer.dtype != queue.dtype
                or buffer.device != queue.device):
            buffer = self._buffer = torch.empty_like(queue, memory_format=torch.contiguous_format)
            self._holders = 0
        return buffer.copy_(queue)

    def keep_until_backward(self, output: torch.Tensor) -> None:
        """The copy last handed out is needed until the backward of the autograd node that made ``output`` (and
        saved the copy) has run."""
        node = output.grad_fn
        if node is None:
            return
        buffer, released = self._buffer, False
        self._holders += 1

        def release(grad_inputs, grad_outputs):
            nonlocal released
            if not released and self._buffer is buffer:
                self._holders -= 1
            released = True

        node.register_hook(release)
