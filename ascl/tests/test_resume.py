"""``--resume`` without a checkpoint in the run directory is a clear error. (A killed run auto-resuming to the
uninterrupted run's parameters is tested for every method in ``tests/reliability/test_faults.py``.)"""
from ci.smoke import run_python

FLAGS = ["--dataset", "digits", "--arch", "resnet20_option_a", "--epochs", "4", "--warm_up", "1",
         "--eval_epochs", "0", "--iters_per_epoch", "3", "--batch-size", "16", "--mem_size", "32",
         "--workers", "0", "--save_freq", "1", "--no_progress", "--knn_k", "20"]


def test_explicit_resume_path_and_missing_checkpoint(tmp_path):
    proc = run_python("ascl", "main.py", *FLAGS, "--run_id", "none", "--resume", expect_failure=True,
                      runs_dir=tmp_path)
    assert "no checkpoint" in proc.stderr and "Traceback" not in proc.stderr
