"""``--K`` / ``--nn_num`` / ``--mem_size`` in both entry points (quirk 5 fixed the main.py way; issue 16: the
README's ``python main_simple.py ... --K 5`` runs as typed, with 5 neighbours)."""
from __future__ import annotations

import pytest

from ascl.model import ASCL
from ascl.pretrain import check_neighbour_flags, main, neighbour_flag_notice, parse_args, results_dir_name
from common.utils import UserError

README_LINE = ["--epochs", "200", "--gpuid", "0", "--dataset", "cifar100", "--data_path", "data/CIFAR100", "--K", "5",
               "--type", "ascl", "--t1", "0.1", "--t2", "0.05", "--aug", "weak_augment"]
NOTICE = "notice: main_simple.py reads --K as the number of neighbours"


@pytest.mark.parametrize("variant", ["main", "main_simple"])
def test_readme_line_means_five_neighbours_and_the_default_queue(variant):
    args, typed = parse_args(variant, README_LINE)
    assert (args.K, args.mem_size) == (5, 4096)
    assert typed == {"--K": 5}
    assert "typed_neighbour_flags" not in vars(args)     # kept out of run.json and the checkpoints
    check_neighbour_flags(args, typed)
    assert results_dir_name(args) == "cifar100_moco_ascl_200_weak_augment_5_0.1_0.05"   # spec b: K = neighbours
    model = ASCL(args.dataset, args.model, dim=16, mem_size=args.mem_size, arch="resnet20_option_a",
                 type=args.type, nn_num=args.K)
    assert model.criterion.nn_num == 5 and model.queue.shape == (16, 4096)


@pytest.mark.parametrize("variant", ["main", "main_simple"])
def test_nn_num_is_an_alias_and_mem_size_the_queue(variant):
    args, typed = parse_args(variant, ["--nn_num", "3", "--mem_size", "512"])
    assert (args.K, args.mem_size) == (3, 512) and typed == {"--nn_num": 3}
    args, typed = parse_args(variant, ["--K", "3", "--nn_num", "3"])
    check_neighbour_flags(args, typed)          # the same value twice is fine
    assert args.K == 3
    args, typed = parse_args(variant, [])
    assert (args.K, args.mem_size, typed) == (1, 4096, {})


@pytest.mark.parametrize("variant", ["main", "main_simple"])
def test_k_and_nn_num_disagreeing_is_refused(variant):
    args, typed = parse_args(variant, ["--K", "5", "--nn_num", "3"])
    with pytest.raises(UserError, match=r"--K 5 and --nn_num 3 disagree.*--mem_size"):
        check_neighbour_flags(args, typed)


def test_main_simple_k_as_an_original_queue_size_is_refused():
    # the original main_simple.py's --K default was the queue 4096; as a neighbour count it is the whole queue
    args, typed = parse_args("main_simple", ["--K", "4096", "--nn_num", "5"])
    with pytest.raises(UserError, match=r"main_simple.py --K 4096 .*--mem_size 4096.*--nn_num"):
        check_neighbour_flags(args, typed)
    args, typed = parse_args("main_simple", ["--K", "64", "--mem_size", "4096"])
    check_neighbour_flags(args, typed)      # fewer neighbours than the queue: a neighbour count
    # main.py's --K never meant a queue: the ahcl/hard top-k check (validate_args) covers it instead
    args, typed = parse_args("main", ["--K", "4096"])
    check_neighbour_flags(args, typed)


def test_notice_only_for_main_simple_and_a_typed_k():
    assert neighbour_flag_notice("main_simple", {"--K": 5}).startswith(NOTICE)
    assert "--mem_size" in neighbour_flag_notice("main_simple", {"--K": 5, "--nn_num": 5})
    assert neighbour_flag_notice("main_simple", {"--nn_num": 5}) is None
    assert neighbour_flag_notice("main_simple", {}) is None
    assert neighbour_flag_notice("main", {"--K": 5}) is None


def test_main_simple_prints_the_notice_once_before_anything_else(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")    # main() writes --gpuid there unless it is set: keep it local
    argv = [a if a != "data/CIFAR100" else str(tmp_path / "nowhere") for a in README_LINE] + ["--K", "5"]
    with pytest.raises(UserError, match="nowhere"):
        main("main_simple", argv)
    err = capsys.readouterr().err
    assert err.count(NOTICE) == 1 and err.startswith(NOTICE), err
    with pytest.raises(UserError, match="nowhere"):
        main("main", argv)
    assert NOTICE not in capsys.readouterr().err


def test_hard_top_k_beyond_the_queue_names_the_flags():
    from ascl.pretrain import validate_args
    args, _ = parse_args("main", ["--type", "hard", "--K", "64", "--mem_size", "32", "--batch-size", "16"])
    with pytest.raises(UserError, match=r"top-64.*--K / --nn_num.*holds only 32.*--mem_size"):
        validate_args(args)
