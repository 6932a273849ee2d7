"""Shared by every test: one torch thread. Tiny tensors run fastest on one thread; two threads on a busy
2-core machine spin and run several times slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
