"""Model structure against the original's parameter counts (tests/golden/ascl/archs.json) and checkpoint keys."""
import json

import pytest
import torch

from ascl.model import ASCL, LinearHead, ModelBase
from common.golden import golden_file
from common.utils import count_parameters


@pytest.mark.parametrize("arch", ["resnet18"])  # resnet34/50 checked the same way by hand (slow to build)
def test_parameter_counts_match_original(arch):
    ref = json.loads(golden_file("ascl", "archs.json").read_text())
    for variant in ("cifar10", "stl10"):
        entry = ref.get(f"{arch}/{variant}")
        if entry is None:
            continue
        model = ModelBase(variant, 128, arch)
        assert count_parameters(model.net) == entry["backbone_params"]
        assert count_parameters(model.projector) == entry["projector_params"]
        size = entry["input_size"]
        with torch.no_grad():
            model.eval()
            assert model(torch.randn(2, 3, size, size), feat=True).shape == (2, entry["feat_dim"])


def test_wrapper_counts_teacher_frozen_and_original_buffer_names():
    moco = ASCL("cifar10", "moco")
    assert count_parameters(moco, trainable_only=True) == 12_481_728
    assert all(not p.requires_grad for p in moco.encoder_k.parameters())
    state = moco.state_dict()
    original = {k.replace("criterion.", ""): v for k, v in state.items()}   # queue, labels, queue_ptr at top level
    moco.load_state_dict(original)
    byol = ASCL("cifar10", "byol")
    assert count_parameters(byol, trainable_only=True) == 12_614_464
    head = LinearHead(moco.encoder_q, 512, 10)
    assert count_parameters(head, trainable_only=True) == 512 * 10 + 10


def test_ema_and_train_step_on_tiny_batch():
    torch.manual_seed(0)
    model = ASCL("cifar10", "moco", dim=16, mem_size=32, arch="resnet20_option_a", nn_num=2)
    before = [p.clone() for p in model.encoder_k.parameters()]
    x = torch.randn(16, 3, 16, 16)
    out = model(x, x.flip(3), torch.arange(16))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.soft_labels.shape == (16, 33)
    assert int(model.criterion.queue_ptr) == 16
    # teacher starts as a copy, so the first EMA step leaves it unchanged
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, model.encoder_k.parameters()))


def test_original_checkpoint_layout_loads():
    """The original ModelBase is an nn.Sequential of the ResNet's children (``encoder_q.net.0.weight`` = conv1 ...) and
    the queue buffers sit at the top level: such a ``ckpts.pth`` state dict loads into this model, every tensor in its
    place (issue 16: it used to fail with 243 missing / 243 unexpected keys)."""
    import re
    from ascl.model import ASCL
    from common.training import load_model_state
    for dataset in ("cifar10", "stl10"):        # the max-pool is dropped for CIFAR and kept for STL-10
        source = ASCL(dataset, "moco", 16, 64, 0.99, 0.1, 0.05, "resnet18", "ascl", 1, 8, True, "mlp")
        names = [n for n, _ in source.encoder_q.net.named_children()]
        original = {}
        for key, value in source.state_dict().items():
            match = re.match(r"(encoder_[qk]\.net\.)(\w+)\.(.*)", key)
            if match:
                key = f"{match.group(1)}{names.index(match.group(2))}.{match.group(3)}"
            original[key.replace("criterion.", "")] = value + 1 if value.is_floating_point() else value
        assert "encoder_q.net.0.weight" in original and "queue" in original
        target = ASCL(dataset, "moco", 16, 64, 0.99, 0.1, 0.05, "resnet18", "ascl", 1, 8, True, "mlp")
        load_model_state(target, original)
        for key, value in source.state_dict().items():
            expected = value + 1 if value.is_floating_point() else value
            assert torch.equal(target.state_dict()[key], expected), key
        # and what the training loop saves is exactly that layout (the original's --resume reads it)
        assert list(source.original_state_dict()) == list(original)
