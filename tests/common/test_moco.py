import pytest
import torch
import torch.nn as nn

from common.backbones import build_backbone
from common.moco import moco_encoder_pair


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
