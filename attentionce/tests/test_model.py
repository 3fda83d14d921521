"""The model matches the original's structure (archs.json) and the view-order quirk switch."""
from __future__ import annotations

import json

import torch

from common.golden import golden_file


def test_resnet50_model_matches_original():
    from attentionce.image.model import Model, add_module_prefix
    spec = json.loads(golden_file("attentionce", "archs.json").read_text())["resnet50_cifar_variant"]
    model = Model(128, "resnet50")
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(model.f) == spec["encoder_params"]
    assert count(model.g) == spec["projection_head_params"]
    assert count(model) == spec["total_params"]
    assert sum(b.numel() for b in model.buffers()) == spec["buffers_numel"]
    state = add_module_prefix(model.state_dict())
    assert len(state) == spec["state_dict_entries"]
    assert set(spec["example_keys"]) <= set(state)
    assert [type(m).__name__ for m in model.f] == spec["encoder_children"]
    assert [type(m).__name__ for m in model.g] == spec["head_children"]
    conv1 = model.f[0]
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.bias is None
    model.eval()
    with torch.no_grad():
        feature, out = model(torch.randn(2, 3, 32, 32))
        assert model.f[:7](torch.randn(1, 3, 32, 32)).shape[1:] == tuple(spec["shapes_by_input_size"]["32"]["last_stage_shape"])
    assert feature.shape == (2, 2048) and out.shape == (2, 128)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_view_order_and_tiny_bug_switch():
    from attentionce.image.main import get_parser, view_order
    parse = lambda *a: get_parser().parse_args(list(a))
    assert view_order(parse()) == [0, 1, 2, 3, 4, 5]
    assert view_order(parse("--repeat_view4_bug")) == [0, 1, 2, 3, 4, 3]
    assert view_order(parse("--loss", "simclr")) == [0, 1]
    tiny = get_parser("tiny").parse_args([])
    assert tiny.dataset_name == "tinyImageNet" and tiny.save_every == 100 and not tiny.repeat_view4_bug
    assert "--repeat_view4_bug" in get_parser().format_help()


def test_seeded_views_are_reproducible():
    from attentionce.image.utils import get_pretrain_dataset
    a = get_pretrain_dataset("digits", None, 16, seed=3)
    b = get_pretrain_dataset("digits", None, 16, seed=3)
    va, _ = a[5]
    assert va.shape == (6, 3, 16, 16)
    torch.testing.assert_close(va, b[5][0])
    assert not torch.equal(va[0], va[1])  # the six views are independent draws
    b.set_epoch(1)
    assert not torch.equal(va, b[5][0])
