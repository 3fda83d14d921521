"""Distributed: PaCo's four training entry points, launched with 2 gloo CPU processes through the originals' flags
(mp.spawn) or torchrun, end where the defined relationship says (spec §i).

PaCo's multi-process step is *not* a 1-process step on the global batch, by design: each process computes the loss
of its own anchors against [its queries; its keys; the global queue] (no gather of the batch), DDP averages the
gradients, and the queue receives every process's keys in rank order. So the reference is computed here, in one
process, from the same initial model and the same global batches: the two halves' losses (process r holds samples
r, r+2, … of each global batch), averaged, one SGD step, both halves enqueued. BatchNorm is the real, per-process
one: the queries of a half are normalised over that half, and the keys as shuffle-BN does it (one permutation of
the rank-ordered global batch, drawn from rank 0's generator, each process encoding one contiguous part). Rank 0's
generator after the model is built is used by nothing but those permutations (the augmentations are seeded per
image, the samplers and loaders have their own generators), so the reference draws the same ones. BN running
statistics are left out: each process updates its own (rank 0's are saved) and they do not enter a training step.
The Places entry point adds its recipe: frozen convolutions (but the last block of layer4) and mixed precision,
which on CPU is bfloat16 autocast around the forward passes and the loss, reproduced in the reference as well.
bfloat16 convolutions are ~16x slower than float32 on a CPU without native bfloat16 (this machine's AVX2), so the
Places variant trains one global batch of 32 (``CL_SHORT_RUN=1``: every training loader stops after its first batch),
not four of 128, with the same relationship checked after that step, and evaluates on one batch of the test split
(``CL_SHORT_EVAL=1``): the whole split's two bfloat16 passes cost more than the step.

The reference runs on one intra-op thread, as the launched processes do (``ci.smoke`` sets OMP_NUM_THREADS=1): a
different thread count changes the order of the convolutions' float reductions, and four SGD steps through per-half
BatchNorm on 64 samples amplify that rounding to ~5e-4 in the keys, which is noise, not a difference in the math.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ci.smoke import assert_states_close, read_scalars, run_torchrun, spawn_flags
from paco.tests.helpers import run, run_dir

pytestmark = pytest.mark.distributed

WORLD = 2
# 545 long-tailed digits: 4 global batches of 128 per epoch (4 x 64 per process)
DIGITS = ["--dataset", "digits", "--epochs", "1", "-b", "128", "--moco-k", "384", "--moco-dim", "16", "--lr", "0.05",
          "--warmup_epochs", "1", "-j", "0", "--seed", "0", "-p", "1"]
VARIANTS = {  # variant: (entry point, launcher, flags); places: one step (module docstring)
    "cifar": ("LT/paco_cifar.py", "spawn", ["--imb-factor", "0.1", "--alpha", "0.01", "--feat_dim", "64"]),
    "lt": ("LT/paco_lt.py", "torchrun", ["--arch", "resnet32", "--feat_dim", "64"]),
    "imagenet": ("Full-ImageNet/paco_imagenet.py", "spawn", ["--arch", "resnet18"]),
    # the Places recipe: frozen convolutions except layer4's last block, mixed precision (bfloat16 autocast on CPU)
    "places": ("LT/paco_fp16_places.py", "torchrun", ["--arch", "resnet18", "--feat_dim", "512", "--fp16", "-b", "32"]),
}


STEPS = {"places": 1}   # global batches trained per variant (4 otherwise: the whole long-tailed digits epoch)
BATCH = {"places": 32}  # global batch (128 otherwise)


def reference(variant: str, argv: list) -> tuple[dict, list]:
    """State dict and per-step losses of the 2-process run, computed in this process (see the module docstring)."""
    from common.utils import seed_everything
    from paco.losses import PaCoLoss
    from common.utils import autocast
    from paco.main_paco import adjust_learning_rate, build_datasets, build_model, freeze_for_places, parse_args
    args = parse_args(variant, argv)
    seed_everything(args.seed, deterministic=True)   # rank 0's seed; DDP copies rank 0's initial model to the others
    train_set, _, cls_num_list = build_datasets(args)
    model = build_model(args)
    if variant == "places":
        freeze_for_places(model)
    criterion = PaCoLoss(alpha=args.alpha, beta=args.beta, gamma=args.gamma, temperature=args.moco_t, K=args.moco_k,
                         num_classes=args.num_classes, cls_num_list=None if variant == "imagenet" else cls_num_list)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    adjust_learning_rate(optimizer, 0, args)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=args.seed,
                                                  drop_last=True)
    sampler.set_epoch(0)
    train_set.set_epoch(0)
    # its own generator, like the entry point's loader: the global one is left to the shuffle-BN permutations
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                                         generator=torch.Generator())
    model.train()
    halves = [slice(rank, None, WORLD) for rank in range(WORLD)]
    logged = []
    for _, ((im_q, im_k), target) in zip(range(STEPS.get(variant, 4)), loader):
        queue, queue_l = model.queue.clone(), model.queue_l.clone()
        model._momentum_update_key_encoder()
        with torch.no_grad(), autocast("cpu", args.fp16):
            gathered = torch.cat([im_k[half] for half in halves])            # concat_all_gather: rank order
            permutation = torch.randperm(len(gathered))
            shuffled = torch.cat([F.normalize(model.encoder_k(gathered[part]), dim=1)
                                  for part in permutation.view(WORLD, -1)])
            keys = shuffled[torch.argsort(permutation)].view(WORLD, len(gathered) // WORLD, -1)
        losses = []
        for rank, half in enumerate(halves):
            with autocast("cpu", args.fp16):
                q = F.normalize(model.encoder_q(im_q[half]), dim=1)
                sup_logits = model.pooled_classifier_logits()
                features = torch.cat((q, keys[rank].to(q.dtype), queue.to(q.dtype)))
                labels = torch.cat((target[half], target[half], queue_l))
                losses.append(criterion(features.float(), labels, sup_logits.float()))   # inside, as the entry
        loss = torch.stack(losses).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model._dequeue_and_enqueue(keys.flatten(0, 1), torch.cat([target[half] for half in halves]))
        logged.append(float(loss.detach()))
    return model.state_dict(), logged


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_two_processes_follow_the_per_process_loss(variant, tmp_path):
    entry, launcher, flags = VARIANTS[variant]
    argv = [*DIGITS, *flags, "--mark", variant]
    steps = STEPS.get(variant, 4)
    # one step: CL_SHORT_RUN; its evaluations (not checked here) on one batch of the test split: CL_SHORT_EVAL
    env = {"PYTHONUNBUFFERED": "1", **({"CL_SHORT_RUN": "1", "CL_SHORT_EVAL": "1"} if steps == 1 else {})}
    if launcher == "spawn":
        proc = run([entry, *argv, *spawn_flags(WORLD)], tmp_path, env=env)
        assert proc.stdout.count("initial top-1:") == 1   # only rank 0 reports (quirk 18)
    else:
        run_torchrun("paco", entry, *argv, runs_dir=tmp_path, env=env)
    directory = run_dir(tmp_path, variant, full=variant == "imagenet")
    state = torch.load(directory / "moco_ckpt.pth.tar", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and state["args"]["world_size"] == WORLD
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the launched processes' thread count (see the module docstring)
    try:
        expected, expected_losses = reference(variant, argv)
    finally:
        torch.set_num_threads(threads)
    trained = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}   # the original's DDP keys
    assert_states_close(expected, trained, rtol=1e-4, atol=1e-5,
                        skip=("running_mean", "running_var", "num_batches_tracked"))
    assert int(expected["queue_ptr"]) == steps * BATCH.get(variant, 128) % 384 and len(expected_losses) == steps
    q_head = next(k for k in expected if k.startswith("encoder_q.") and k.endswith("weight") and expected[k].dim() == 2)
    assert not torch.allclose(expected[q_head], expected[q_head.replace("encoder_q", "encoder_k")])   # it trained
    logged = [value for _, value in read_scalars(directory)["train/loss"]]
    torch.testing.assert_close(logged, expected_losses, rtol=1e-4, atol=1e-5)
