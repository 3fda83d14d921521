import pytest
import torch
import torch.nn as nn

from common.backbones import build_backbone
from common.moco import QueueSnapshot, moco_encoder_pair


def _encoder(num_classes):
    return build_backbone("resnet18", num_classes=num_classes)


@pytest.mark.parametrize("mlp", [False, True])
def test_key_encoder_is_a_frozen_copy_of_the_query_encoder(mlp):
    q, k = moco_encoder_pair(_encoder, 16, mlp)
    assert isinstance(q.fc, nn.Sequential) == mlp and isinstance(k.fc, nn.Sequential) == mlp
    assert q.fc(torch.zeros(1, 512)).shape == (1, 16)
    sq, sk = q.state_dict(), k.state_dict()
    assert list(sq) == list(sk) and all(torch.equal(sq[n], sk[n]) for n in sq)
    assert all(p.requires_grad for p in q.parameters())
    assert not any(p.requires_grad for p in k.parameters())


def test_seeded_weights_names_and_rng_are_the_original_builders():
    # facebookresearch/moco builder.py: both encoders, then the query's and the key's hidden layer; what the
    # builders draw next (the queue) must come from the same RNG state
    torch.manual_seed(0)
    ref_q, ref_k = _encoder(16), _encoder(16)
    dim_mlp = ref_q.fc.weight.shape[1]
    ref_q.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), ref_q.fc)
    ref_k.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), ref_k.fc)
    ref_next = torch.randn(3)
    torch.manual_seed(0)
    q, _ = moco_encoder_pair(_encoder, 16, mlp=True)
    ref, ours = ref_q.state_dict(), q.state_dict()
    assert list(ref) == list(ours)
    assert all(torch.equal(ref[n], ours[n]) for n in ref)
    assert torch.equal(torch.randn(3), ref_next)


def _step(snapshot, live, q, keys):
    """A MoCo-shaped step: logits against the snapshot, then the enqueue overwrites the live queue."""
    queue = snapshot.copy_of(live)
    logits = q @ queue
    snapshot.keep_until_backward(logits)
    with torch.no_grad():
        live[:, :keys.shape[1]] = keys
    return logits


def test_queue_snapshot_reuses_one_buffer_and_gives_the_pre_enqueue_gradient():
    torch.manual_seed(0)
    live, snapshot = torch.randn(4, 32), QueueSnapshot()
    buffers = []
    for _ in range(3):
        before = live.clone()
        q = torch.randn(2, 4, requires_grad=True)
        _step(snapshot, live, q, torch.randn(4, 8)).sum().backward()
        torch.testing.assert_close(q.grad, before.sum(1).expand(2, 4))   # the queue the forward saw
        buffers.append(snapshot._buffer)
    assert all(buffer is buffers[0] for buffer in buffers)


def test_queue_snapshot_gives_each_pending_graph_its_own_copy():
    torch.manual_seed(0)
    live, snapshot = torch.randn(4, 32), QueueSnapshot()
    q = torch.randn(2, 4, requires_grad=True)
    first_queue = live.clone()
    first = _step(snapshot, live, q, torch.randn(4, 8))
    second_queue = live.clone()
    second = _step(snapshot, live, q, torch.randn(4, 8))    # before the first backward (gradient accumulation)
    (first.sum() + 2 * second.sum()).backward()
    torch.testing.assert_close(q.grad, (first_queue.sum(1) + 2 * second_queue.sum(1)).expand(2, 4))


def test_queue_snapshot_refilled_under_a_retained_graph_raises_instead_of_using_the_new_queue():
    live, snapshot = torch.randn(4, 32), QueueSnapshot()
    q = torch.randn(2, 4, requires_grad=True)
    old = _step(snapshot, live, q, torch.randn(4, 8))
    old.sum().backward(retain_graph=True)
    _step(snapshot, live, q, torch.randn(4, 8))             # refills the buffer the retained graph saved
    with pytest.raises(RuntimeError, match="inplace"):
        old.sum().backward()


def test_queue_snapshot_follows_the_queue_to_a_new_dtype():
    snapshot = QueueSnapshot()
    assert snapshot.copy_of(torch.ones(2, 3)).dtype == torch.float32
    copy = snapshot.copy_of(torch.ones(2, 3, dtype=torch.float64))
    assert copy.dtype == torch.float64 and torch.equal(copy, torch.ones(2, 3, dtype=torch.float64))
