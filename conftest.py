"""Suite-wide set-up. Under pytest-xdist (``-n 2`` in pyproject.toml) each worker process gets its share of the
cores for torch's intra-op threads: two workers of two threads each on a 2-core machine would spin against each
other in OpenMP's barriers. Subprocesses started by tests set their own (``ci.smoke`` gives them one thread)."""
import os

import torch

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))

# The longest test files, started first: under ``--dist loadfile`` a file runs whole on one worker, so one of these
# left for the end would keep a worker busy alone while the other idles (measured durations: README, Development).
LONGEST_FIRST = ("tests/test_original_commands.py", "paco/tests/test_distributed.py",
                 "tests/reliability/test_bad_input.py")


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    root = str(config.rootpath)
    items.sort(key=lambda item: rank.get(os.path.relpath(str(item.path), root), len(rank)))   # stable: rest in order
