"""``common.checkpoint_formats`` / ``python -m common.evaluate`` (issue 16 A, B).

Every case builds the method's real model class, perturbs *all* its tensors (so the query and key encoders, and the
networks of a multi-network model, differ), saves it the way the entry point or the original repository does, and
requires the extracted backbone to give exactly the method's own evaluation feature on a batch of images.
"""
import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ci import warm
from common.backbones import build_backbone
from common.checkpoint_formats import extract_backbone_state
from common.evaluate import export_backbone, feature_function, load_backbone, main
from common.utils import UserError

ROOT = Path(__file__).resolve().parents[2]


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.05 * torch.randn(value.shape, generator=gen))
                if value.dim() == 1:
                    value.abs_()  # running variances stay positive
    return model.eval()


def without_head(encoder: nn.Module, head: str = "fc") -> nn.Module:
    encoder = copy.deepcopy(encoder)
    setattr(encoder, head, nn.Identity())
    return encoder.eval()


def module_prefixed(state: dict) -> dict:
    return {"module." + k: v for k, v in state.items()}


# ---------------------------------------------------------------------------------------- cases: (obj, arch, feature)
def cacr_small_project():
    from cacr.small_scale_experiments.encoder import ProjectedBackbone
    encoder = perturbed(ProjectedBackbone("resnet20_option_a"))
    return {"epoch": 1, "state_dict": encoder.state_dict(), "args": {"arch": "resnet20_option_a"}}, \
        "resnet20_option_a", lambda x: encoder(x, layer_index=-2)


def cacr_small_original():  # encoder.pth: the bare SmallAlexNet's state dict (spec g.1)
    net = perturbed(build_backbone("small_alexnet", feat_dim=64, input_size=32))
    return net.state_dict(), "small_alexnet", lambda x: net(x, layer_index=-2)


def cacr_large_original():  # checkpoint_{epoch:04d}.pth.tar, DDP keys module.encoder_q / encoder_k / queue (g.2)
    from cacr.large_scale_shift_experiments.imagenet.ours.builder import MoCo
    model = perturbed(MoCo(lambda num_classes: build_backbone("resnet18", num_classes=num_classes), dim=16, K=32,
                           mlp=True))
    return {"epoch": 2, "arch": "resnet18", "state_dict": module_prefixed(model.state_dict()), "optimizer": {}}, \
        "resnet18", without_head(model.encoder_q)


def cacr_v3_original():  # MoCo v3: module.base_encoder / momentum_encoder / predictor (g.3)
    from cacr.imagenet_pretraining.moco.builder import MoCo_ResNet
    model = perturbed(MoCo_ResNet(lambda num_classes, zero_init_residual: build_backbone(
        "resnet18", num_classes=num_classes, zero_init_residual=zero_init_residual), dim=16, mlp_dim=32))
    return {"epoch": 1, "arch": "resnet18", "state_dict": module_prefixed(model.state_dict()), "scaler": {}}, \
        "resnet18", without_head(model.base_encoder)


def cacr_v3_vit_original():  # MoCo v3 ViT (32 px: the position embedding gives the input size)
    from cacr.imagenet_pretraining import vits
    from cacr.imagenet_pretraining.moco.builder import MoCo_ViT
    model = perturbed(MoCo_ViT(lambda num_classes: vits.VITS["vit_small"](num_classes=num_classes, image_size=32),
                               dim=16, mlp_dim=32))
    return {"epoch": 1, "arch": "vit_small", "state_dict": module_prefixed(model.state_dict())}, "vit_small", \
        without_head(model.base_encoder, "heads")


def ascl_project():  # this project's ckpts.pth / model_last.pth (save_training_state of the ASCL model)
    from ascl.model import ASCL
    model = perturbed(ASCL("digits", arch="resnet20_option_a", mem_size=32, dim=16))
    return {"epoch": 1, "state_dict": model.state_dict(), "args": {"arch": "resnet20_option_a", "dataset": "digits"}}, \
        "resnet20_option_a", lambda x: model.encoder_q(x, feat=True)


def ascl_original():  # CIFAR ResNet-18 with split BN, the original's numbered Sequential keys (encoder_q.net.0.weight)
    from ascl.model import ASCL    # and queue buffers at the top level; no args saved
    model = perturbed(ASCL("cifar10", arch="resnet18", mem_size=32, dim=16))
    assert "encoder_q.net.0.weight" in model.original_state_dict()
    return {"epoch": 50, "state_dict": model.original_state_dict(), "optimizer": {}}, "cifar_resnet18", \
        lambda x: model.encoder_q(x, feat=True)


def paco_original():  # moco_ckpt.pth.tar: module.encoder_q (fc = Linear-BN-ReLU-Linear), encoder_k, linear, queues
    from paco.moco.builder import PaCo
    model = perturbed(PaCo(lambda num_classes: build_backbone("resnet32_option_a", num_classes=num_classes),
                           dim=16, K=32, feat_dim=64, num_classes=10))
    return {"epoch": 3, "arch": "resnet32", "acc": 1.0, "state_dict": module_prefixed(model.state_dict())}, \
        "resnet32_option_a", without_head(model.encoder_q)


def mcl_cifar_project():  # engine.training_state: {'net': wrapper state dict, ...}, network 1 requested
    from mcl.models import get_model
    net = perturbed(get_model("resnet32", 10, 2))
    return {"net": net.state_dict(), "acc": 0.5, "epoch": 1, "optimizer": {}}, "resnet32", \
        without_head(net.module_list[1], "classifier")


def mcl_cifar_multibranch_project():  # N = 3: shared conv1 / bn1 / layer1, branches layer2_<i> / layer3_<i>
    from mcl.models import get_model
    net = perturbed(get_model("resnet32", 10, 3))
    return {"net": net.state_dict(), "acc": 0.5, "epoch": 1, "optimizer": {}}, "resnet32", \
        lambda x: net.branch(1, net.stem(x))[1]


def mcl_moco_original():  # checkpoint_{epoch:04d}.pth.tar: module.encoder_q_<i> / encoder_k_<i>, one queue per net
    from mcl.moco.builder_mcl import MoCo
    model = perturbed(MoCo(lambda num_classes: build_backbone("resnet18", num_classes=num_classes), number_net=2,
                           dim=16, K=32))
    return {"epoch": 1, "arch": "resnet18", "state_dict": module_prefixed(model.state_dict())}, "resnet18", \
        without_head(model.encoder_q_0)


def attentionce_original():  # torch.save(DataParallel(Model).state_dict()): module.f.<i> (Sequential), module.g
    from attentionce.image.model import Model, add_module_prefix
    model = perturbed(Model(feature_dim=16, arch="resnet18"))
    return add_module_prefix(model.state_dict()), "cifar_resnet18", model.features


def attentionce_project():  # checkpoint.pth: {'state_dict': Model.state_dict(), ...} with a small --arch
    from attentionce.image.model import Model
    model = perturbed(Model(feature_dim=16, arch="resnet20_option_a"))
    return {"epoch": 1, "global_step": 2, "state_dict": model.state_dict()}, "resnet20_option_a", model.features


CASES = {f.__name__: f for f in (cacr_small_project, cacr_small_original, cacr_large_original, cacr_v3_original,
                                 cacr_v3_vit_original,
                                 ascl_project, ascl_original, paco_original, mcl_cifar_project, mcl_cifar_multibranch_project,
                                 mcl_moco_original,
                                 attentionce_original, attentionce_project)}


@pytest.mark.parametrize("case", list(CASES))
def test_backbone_of_every_format_gives_the_methods_feature(case, tmp_path):
    torch.manual_seed(0)
    obj, arch, reference = CASES[case]()
    member = 1 if case.startswith("mcl_cifar") else 0
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model, found = load_backbone(str(path), member=member)
    assert found.arch == arch, found.source
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(feature_function(model)(x), reference(x)), found.source
    # the same with the architecture given, and a wrong one named in one error
    assert extract_backbone_state(obj, arch=arch, member=member).arch == arch
    wrong = "resnet50" if arch != "resnet50" else "resnet18"
    with pytest.raises(UserError, match=f"not a '{wrong}' backbone"):
        extract_backbone_state(obj, arch=wrong, member=member)


def test_ascl_keeps_the_maxpool_for_stl10_and_tinyimagenet(tmp_path):
    from ascl.model import ASCL
    model = perturbed(ASCL("stl10", arch="resnet18", mem_size=32, dim=16))
    found = extract_backbone_state({"state_dict": model.state_dict(), "args": {"dataset": "stl10", "arch": "resnet18"}})
    assert (found.arch, found.build_kwargs) == ("cifar_resnet18", {"maxpool": True})
    net = build_backbone(found.arch, **found.build_kwargs)
    net.load_state_dict(found.state_dict)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), model.encoder_q(x, feat=True))
    # the original saves no args: --maxpool says it
    tmp = tmp_path / "ascl_stl_original.pth"
    torch.save({"epoch": 50, "state_dict": model.state_dict()}, tmp)
    assert load_backbone(str(tmp))[1].build_kwargs == {}
    net, found = load_backbone(str(tmp), maxpool=True)
    with torch.no_grad():
        assert torch.equal(net(x), model.encoder_q(x, feat=True))
    torch.save(build_backbone("resnet18").state_dict(), tmp_path / "torchvision_resnet18.pth")
    with pytest.raises(UserError, match="cifar_resnet\\* backbones only, not 'resnet18'"):
        load_backbone(str(tmp_path / "torchvision_resnet18.pth"), maxpool=True)


def test_unrecognised_checkpoints_are_one_error_naming_what_was_found():
    with pytest.raises(UserError, match=r"no model weights found: top-level keys \['epoch', 'foo'\].*Accepted"):
        extract_backbone_state({"epoch": 1, "foo": "bar"})
    with pytest.raises(UserError, match=r"no registered backbone.*start with 'encoder_q.net.'"):
        extract_backbone_state({"state_dict": {"weird.layer.weight": torch.zeros(3, 3)}})
    with pytest.raises(UserError, match="networks 0, 1.*not 5; pick one with --member"):
        extract_backbone_state(mcl_moco_original()[0], member=5)
    with pytest.raises(UserError, match="branches 0, 1, 2 .*not 3; pick one with --member"):
        extract_backbone_state(mcl_cifar_multibranch_project()[0], member=3)
    with pytest.raises(UserError, match="unknown --arch 'resnet9'"):
        extract_backbone_state(build_backbone("resnet18").state_dict(), arch="resnet9")


def test_export_loads_into_torchvision_resnet18_strictly(tmp_path):
    import torchvision
    obj, _, reference = cacr_large_original()
    found = extract_backbone_state(obj)
    out = tmp_path / "sub" / "resnet18_backbone.pth"
    target = export_backbone(found, str(out))
    assert "torchvision.models.resnet18()" in target
    state = torch.load(out, weights_only=True)
    tv = torchvision.models.resnet18()
    tv.fc = nn.Identity()
    tv.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tv.eval()(x), reference(x))
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # atomic: no temp file left


def test_export_of_a_moco_v3_vit_base_loads_into_torchvision_vit_b_16(tmp_path):
    """CACR's MoCo-v3 ViT-B/16 (fixed sin-cos position embedding, MoCo-v3 init) exported from a training
    checkpoint is torchvision's vit_b_16 less its head: strict load, the same CLS features."""
    import torchvision
    from cacr.imagenet_pretraining import vits
    torch.manual_seed(0)
    model = vits.VITS["vit_base"](num_classes=0).eval()
    obj = {"epoch": 1, "arch": "vit_base", "state_dict": {f"module.base_encoder.{k}": v
                                                          for k, v in model.state_dict().items()}}
    found = extract_backbone_state(obj)
    target = export_backbone(found, str(tmp_path / "vit.pth"))
    assert target.startswith("torchvision.models.vit_b_16() with model.heads = torch.nn.Identity()"), target
    with torch.device("meta"):   # no 86M-parameter initialisation: every tensor comes from the export
        tv = torchvision.models.vit_b_16()
    tv.heads = nn.Identity()
    tv.load_state_dict(torch.load(tmp_path / "vit.pth", weights_only=True), strict=True, assign=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(x), model(x), rtol=1e-5, atol=1e-5)


def test_export_of_a_cifar_resnet_loads_into_the_described_torchvision_model(tmp_path):
    import torchvision
    obj, _, reference = attentionce_original()
    found = extract_backbone_state(obj)
    target = export_backbone(found, str(tmp_path / "b.pth"))
    assert "Conv2d(3, 64, 3, 1, 1, bias=False)" in target and "maxpool = torch.nn.Identity()" in target
    tv = torchvision.models.resnet18()
    tv.conv1, tv.maxpool, tv.fc = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity(), nn.Identity()
    tv.load_state_dict(torch.load(tmp_path / "b.pth", weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(tv.eval()(x), reference(x))


def test_protocols_on_digits_in_process(tmp_path, capsys):
    torch.manual_seed(0)
    obj, _, _ = attentionce_project()
    torch.save(obj, tmp_path / "c.pth")
    res = main([str(tmp_path / "c.pth"), "--knn", "--linear", "--shots", "--linear-epochs", "2", "--knn-k", "20",
                "--export", str(tmp_path / "b.pth")])
    assert res["arch"] == "resnet20_option_a" and res["dataset"] == "digits" and res["feature_dim"] == 64
    for name in ("knn", "linear"):  # digits: ~135 training images per class → every class is "many"
        assert 10.0 < res[name]["top1"] <= 100.0 and res[name]["medium"] == res[name]["few"] == 0.0
        assert abs(res[name]["many"] - res[name]["top1"]) < 2.0   # balanced test set: class mean ≈ sample mean
    assert res["knn"]["k"] == 20
    out = capsys.readouterr().out
    assert "k-NN (k=20, T=0.1) top-1:" in out and "linear (2 epochs, lr 0.1, standardize features) top-1:" in out
    assert (tmp_path / "b.pth").is_file()


def test_imagefolder_eval_split_lacking_a_class(tmp_path):
    import shutil

    from common.data import fake
    fake.write_imagefolder(tmp_path / "data", n_classes=3, n_per_class=4, size=32)
    classes = sorted(p.name for p in (tmp_path / "data" / "train").iterdir())
    shutil.rmtree(tmp_path / "data" / "val" / classes[0])
    torch.save(build_backbone("resnet20_option_a").state_dict(), tmp_path / "b.pth")
    res = main([str(tmp_path / "b.pth"), "--dataset", "imagefolder", "--data", str(tmp_path / "data"),
                "--image-size", "32", "--resize", "32", "--knn", "--knn-k", "3"])
    assert 0.0 <= res["knn"]["top1"] <= 100.0


def test_cli_error_is_one_line_and_help_shows_defaults(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    torch.save({"epoch": 1, "optimizer": {}}, tmp_path / "bad.pth")
    proc = warm.run([sys.executable, "-m", "common.evaluate", str(tmp_path / "bad.pth")], ROOT, env, 120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "['epoch', 'optimizer']" in lines[0]
    proc = warm.run([sys.executable, "-m", "common.evaluate", "--help"], ROOT, env, 120)
    assert proc.returncode == 0 and "(default: digits)" in proc.stdout and "(default: 200)" in proc.stdout


@pytest.mark.slow
def test_checkpoint_of_the_mcl_entry_point(tmp_path):
    """End to end: MCL's digits script (1 epoch, 2 steps) writes its checkpoint; the evaluator reads it."""
    from ci.smoke import run_script
    run_script("mcl", "sh/train.sh", "--epochs", "1", "--max-iters", "2", "--num-workers", "0", "--no-progress",
               runs_dir=tmp_path)
    ckpt = next(tmp_path.rglob("resnet32.pth.tar"))
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = warm.run([sys.executable, "-m", "common.evaluate", str(ckpt), "--knn", "--member", "1"], ROOT, env, 300)
    assert proc.returncode == 0, proc.stderr
    assert "MCL network 1 of the *_n wrapper" in proc.stdout and "backbone resnet32 " in proc.stdout
    assert "k-NN (k=200, T=0.1) top-1:" in proc.stdout
