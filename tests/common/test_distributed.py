import argparse
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from common import distributed as D

WORKER = textwrap.dedent('''
    import argparse, os, sys
    import torch
    import torch.nn.functional as F
    from common import distributed as D

    B = 4

    def main_worker(local_rank, args):
        D.init_distributed(args, local_rank)
        r, w = D.get_rank(), D.get_world_size()
        torch.manual_seed(0)
        x_all = torch.randn(w * B, 5)
        local = x_all[r * B:(r + 1) * B]
        gathered = D.concat_all_gather(local)
        torch.manual_seed(1)
        model = D.wrap_ddp(torch.nn.Linear(5, 3), args)
        z = model(local)
        z_all = D.all_gather_with_grad(z)
        logits = z @ z_all.t() / 0.5                     # local anchors against the global batch
        loss = F.cross_entropy(logits, torch.arange(B) + r * B)   # mean over this rank's anchors
        loss.backward()
        x = (torch.arange(B, dtype=torch.float32) + r * B).view(B, 1)
        shuffled, idx_unshuffle = D.batch_shuffle_ddp(x)
        restored = D.batch_unshuffle_ddp(shuffled, idx_unshuffle)
        out = dict(rank=r, world=w, local_rank=args.local_rank, distributed=args.distributed,
                   device=str(args.device), gathered=gathered, loss=loss.detach(),
                   grad_w=D.unwrap_model(model).weight.grad, grad_b=D.unwrap_model(model).bias.grad,
                   shuffled=D.concat_all_gather(shuffled), restored=restored, x=x, idx=idx_unshuffle,
                   sampler=len(D.distributed_sampler(list(range(10)), args, shuffle=False)),
                   uneven=D.concat_all_gather_uneven(torch.full((r + 1, 2), float(r))),
                   mean=D.all_reduce_mean(torch.tensor([float(r)])))
        torch.save(out, os.path.join(args.out, f"rank{r}.pt"))
        D.barrier()
        D.cleanup()

    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        D.add_distributed_args(parser)
        parser.add_argument("--out", required=True)
        args = parser.parse_args()
        D.launch(main_worker, args)
''')


def _reference():
    torch.manual_seed(0)
    x_all = torch.randn(8, 5)
    torch.manual_seed(1)
    model = torch.nn.Linear(5, 3)
    z = model(x_all)
    loss = F.cross_entropy(z @ z.t() / 0.5, torch.arange(8))
    loss.backward()
    return x_all, model.weight.grad, model.bias.grad


def _check(out_dir):
    x_all, gw, gb = _reference()
    results = [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False) for r in range(2)]
    for r, res in enumerate(results):
        assert res["rank"] == r and res["world"] == 2 and res["distributed"] and res["device"] == "cpu"
        assert res["local_rank"] == r
        torch.testing.assert_close(res["gathered"], x_all)
        # DDP averaged gradients through all_gather_with_grad == single-process gradients
        torch.testing.assert_close(res["grad_w"], gw, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(res["grad_b"], gb, rtol=1e-5, atol=1e-6)
        assert torch.equal(res["restored"], res["x"])
        assert res["sampler"] == 5
        assert res["uneven"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
        assert res["mean"].tolist() == [0.5]
    # the shuffle is one global permutation shared by both ranks
    assert torch.equal(results[0]["idx"], results[1]["idx"])
    assert torch.equal(results[0]["shuffled"], results[1]["shuffled"])
    assert sorted(results[0]["shuffled"].flatten().tolist()) == list(range(8))
    loss_mean = (results[0]["loss"] + results[1]["loss"]) / 2
    torch.manual_seed(0)
    x = torch.randn(8, 5)
    torch.manual_seed(1)
    m = torch.nn.Linear(5, 3)
    z = m(x)
    torch.testing.assert_close(loss_mean, F.cross_entropy(z @ z.t() / 0.5, torch.arange(8)))


def _env():
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.distributed
def test_mp_spawn_launch_two_cpu_ranks(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    r = subprocess.run([sys.executable, str(script), "--multiprocessing-distributed", "--nproc-per-node", "2",
                        "--dist-backend", "gloo", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    _check(tmp_path)


@pytest.mark.distributed
def test_torchrun_launch_two_cpu_ranks(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    # nccl is requested (the originals' default) and must fall back to gloo on CPU
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", str(D.find_free_port()), str(script), "--dist-url", "env://",
                        "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    _check(tmp_path)


def test_single_process_defaults_and_identities(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    parser = argparse.ArgumentParser()
    D.add_distributed_args(parser, world_size=1, rank=0, dist_url="tcp://localhost:9996",
                           multiprocessing_distributed=True)
    args = parser.parse_args(["--no-multiprocessing-distributed"])
    assert args.multiprocessing_distributed is False and args.dist_url == "tcp://localhost:9996"
    seen = []
    D.launch(lambda gpu, a: seen.append((gpu, D.init_distributed(a, gpu))), args)
    assert seen == [(0, torch.device("cpu"))]
    assert args.distributed is False and args.rank == 0 and args.world_size == 1
    assert D.get_world_size() == 1 and D.is_main_process()
    x = torch.randn(6, 3, requires_grad=True)
    assert D.concat_all_gather(x) is x and D.all_gather_with_grad(x) is x
    xs, idx = D.batch_shuffle_ddp(x.detach())
    assert torch.equal(D.batch_unshuffle_ddp(xs, idx), x.detach())
    assert D.distributed_sampler(list(range(4)), args) is None
    model = torch.nn.Linear(2, 2)
    assert D.wrap_ddp(model, args) is model
    assert D.per_process_batch_size(256, args) == 256


def test_add_distributed_args_keeps_existing_flags():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", default=9, type=int)
    D.add_distributed_args(parser)
    args = parser.parse_args([])
    assert args.gpu == 9 and args.world_size == -1 and args.dist_backend == "nccl" and args.nproc_per_node == 1
    with pytest.raises(ValueError):
        D.add_distributed_args(argparse.ArgumentParser(), no_such_flag=1)


@pytest.mark.distributed
def test_user_error_in_spawned_worker_gives_one_clean_message(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(textwrap.dedent('''
        import argparse
        from common import distributed as D
        from common.utils import UserError, run_main

        def main_worker(local_rank, args):
            D.init_distributed(args, local_rank)
            if D.get_rank() == 1:
                raise UserError("data path '/nope' does not exist; pass --data")
            D.barrier()

        def main():
            parser = argparse.ArgumentParser()
            D.add_distributed_args(parser)
            D.launch(main_worker, parser.parse_args())

        if __name__ == "__main__":
            run_main(main)
    '''))
    r = subprocess.run([sys.executable, str(script), "--multiprocessing-distributed", "--nproc-per-node", "2"],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error: data path '/nope' does not exist; pass --data" in r.stderr
    assert "Traceback" not in r.stderr


FAILING_WORKER = textwrap.dedent('''
    import argparse
    from common import distributed as D
    from common.utils import UserError, run_main

    def main_worker(local_rank, args):
        D.init_distributed(args, local_rank)
        if args.only_rank is None or D.get_rank() == args.only_rank:
            raise UserError(f"bad input{' on rank ' + str(D.get_rank()) if args.only_rank is not None else ''}")
        D.barrier()

    def main():
        parser = argparse.ArgumentParser()
        D.add_distributed_args(parser)
        parser.add_argument("--only-rank", type=int)
        D.launch(main_worker, parser.parse_args())

    if __name__ == "__main__":
        run_main(main)
''')


@pytest.mark.distributed
@pytest.mark.parametrize("only_rank, message", [(None, "error: bad input"), (1, "error: bad input on rank 1")])
def test_spawned_user_error_is_one_line(tmp_path, only_rank, message):
    """A user error met by every rank of an mp.spawn launch is printed once, not once per rank; one met by a
    single rank is printed too. Exit 2, no traceback."""
    script = tmp_path / "worker.py"
    script.write_text(FAILING_WORKER)
    extra = [] if only_rank is None else ["--only-rank", str(only_rank)]
    r = subprocess.run([sys.executable, str(script), "--multiprocessing-distributed", "--nproc-per-node", "2",
                        "--dist-backend", "gloo", *extra], capture_output=True, text=True, timeout=120, env=_env(),
                       cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr[-3000:]
    assert [line for line in r.stderr.splitlines() if "error:" in line] == [message], r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
