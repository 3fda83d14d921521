"""Bad input: one clear ``error:`` line, non-zero exit, no traceback, no half-written checkpoint."""
import sys

import pytest

from mcl.tests.helpers import run

TINY = ["--epochs", "1", "--max-iters", "2", "--batch-size", "8", "--num-workers", "0", "--no-progress"]


def assert_user_error(out, *words):
    assert "error:" in out and "Traceback" not in out, out[-2000:]
    for w in words:
        assert w in out, out[-2000:]


def test_missing_data_path(tmp_path):
    _, out = run([sys.executable, "main_cifar.py", "--data", tmp_path / "nowhere", *TINY], tmp_path, expect_ok=False)
    assert_user_error(out, "nowhere")


def test_wrong_data_format(tmp_path):
    bad = tmp_path / "cifar"
    (bad / "cifar-100-python").mkdir(parents=True)
    (bad / "cifar-100-python" / "train").write_text("not a pickle")
    (bad / "cifar-100-python" / "test").write_text("not a pickle")
    _, out = run([sys.executable, "main_cifar.py", "--data", bad, *TINY], tmp_path, expect_ok=False)
    assert_user_error(out)


@pytest.mark.parametrize("flags,words", [
    (["--batch-size", "7"], ["--batch-size 7"]),
    (["--number-net", "1"], ["--number-net 1"]),
    (["--resume", "--evaluate"], ["mutually exclusive"]),
])
def test_incompatible_flags(tmp_path, cifar100_root, flags, words):
    _, out = run([sys.executable, "main_cifar.py", "--data", cifar100_root, *TINY, *flags], tmp_path, expect_ok=False)
    assert_user_error(out, *words)


def test_queue_not_divisible_by_batch(tmp_path, imagenet_root):
    _, out = run([sys.executable, "main_moco_mcl.py", "-a", "resnet18", "--data", imagenet_root, "--image-size", "32",
                  "--batch-size", "4", "--moco-k", "10", "--workers", "0", "--no-progress"], tmp_path, expect_ok=False)
    assert_user_error(out, "--moco-k 10", "not divisible")


def test_corrupt_checkpoints(tmp_path, cifar100_root, imagenet_root):
    bad = tmp_path / "resnet32.pth.tar"
    bad.write_bytes(b"\x80\x02garbage")
    _, out = run([sys.executable, "main_cifar.py", "--data", cifar100_root, *TINY, "--resume",
                  "--resume-checkpoint", bad], tmp_path, expect_ok=False)
    assert_user_error(out, "corrupt")
    _, out = run([sys.executable, "main_cifar.py", "--data", cifar100_root, *TINY, "--evaluate",
                  "--evaluate-checkpoint", bad], tmp_path, expect_ok=False)
    assert_user_error(out, "corrupt")
    _, out = run([sys.executable, "main_lincls.py", "-a", "resnet18", "--data", imagenet_root, "--pretrained", bad,
                  "--image-size", "32", "--workers", "0"], tmp_path, expect_ok=False)
    assert_user_error(out, "corrupt")


def test_nan_loss_is_reported_and_no_checkpoint_written(tmp_path, cifar100_root):
    _, out = run([sys.executable, "main_cifar.py", "--data", cifar100_root, *TINY, "--max-iters", "4",
                  "--print-freq", "1", "--init-lr", "1e30", "--name", "nan"], tmp_path, expect_ok=False)
    assert_user_error(out, "loss is")
    assert not list((tmp_path / "runs" / "mcl" / "nan").glob("*.pth.tar*"))
