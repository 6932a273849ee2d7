"""Shared by every test: one torch thread (tiny tensors run fastest on one thread; two threads on a busy 2-core
machine spin and run several times slower), and a checkpoint-signing key of the test session's own, never the
user's (set before any test module copies the environment for its subprocesses)."""

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ["MTV_CHECKPOINT_KEY"] = str(Path(tempfile.mkdtemp(prefix="mtv-test-key-")) / "checkpoint.key")


@pytest.fixture(autouse=True)
def one_cpu_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
