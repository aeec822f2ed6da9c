"""Shared-memory check: DataLoader worker processes hand batches over through /dev/shm.

Docker gives a container 64 MiB of /dev/shm unless told otherwise, and DataLoader workers then die
with a bus error on real batches. Every failure here says how to fix that.
"""
import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

SHM = "/dev/shm"
# Two workers, prefetch 2, ImageNet-sized float32 batches of 64 (38.5 MiB each) keep about 154 MiB in
# flight; 256 MiB leaves room for that. Docker's default of 64 MiB does not.
MIN_SHM_BYTES = 256 * 2**20
ADVICE = ("run the container with a larger --shm-size (e.g. --shm-size=8g; torchdev's compose services and dev "
          "containers read TORCHDEV_SHM_SIZE)")


def shm_report():
    """Size and free space of /dev/shm, in MiB."""
    if not os.path.isdir(SHM):
        return f"{SHM} does not exist"
    stats = os.statvfs(SHM)
    total, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    return f"{SHM} is {total / 2**20:.1f} MiB with {free / 2**20:.1f} MiB free"


class IndexedSamples(Dataset):
    """Sample i is a 3x32x32 image filled with i, returned with the id of the worker that loaded it."""

    def __len__(self):
        return 64

    def __getitem__(self, index):
        return torch.full((3, 32, 32), float(index)), get_worker_info().id


def test_dev_shm_is_large_enough():
    """/dev/shm can hold what DataLoader workers keep in flight on real training batches."""
    assert os.path.isdir(SHM), f"{shm_report()}: {ADVICE}"
    stats = os.statvfs(SHM)
    assert stats.f_blocks * stats.f_frsize >= MIN_SHM_BYTES, \
        f"{shm_report()}, below {MIN_SHM_BYTES // 2**20} MiB: {ADVICE}"


def test_dataloader_with_two_workers_yields_every_sample():
    """Two worker processes together deliver every sample, in order, through shared memory."""
    loader = DataLoader(IndexedSamples(), batch_size=8, num_workers=2, timeout=60)
    try:
        batches = list(loader)
    except RuntimeError as error:  # a worker killed by SIGBUS, or shm_open/ftruncate failing
        pytest.fail(f"DataLoader workers failed ({error}); {shm_report()}: {ADVICE}", pytrace=False)
    images = torch.cat([images for images, _ in batches])
    expected = torch.arange(64.0).view(64, 1, 1, 1).expand(64, 3, 32, 32)
    assert torch.equal(images, expected)
    worker_ids = {int(worker_id) for _, worker_ids in batches for worker_id in worker_ids}
    assert worker_ids == {0, 1}, f"batches came from workers {sorted(worker_ids)}"
