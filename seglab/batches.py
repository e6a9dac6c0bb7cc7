"""What each training step sees: the epoch's batch order, a seed per sample's augmentation,
and iteration that keeps the per-sample work on one thread."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader


class SeededAugment(torch.utils.data.Dataset):
    """Gives every sample's random augmentation its own seed, made from the run's seed, the
    epoch and the sample's index. The same image then gets the same random crop whether a
    worker process or the main process loads it, and whether the run was resumed or not:
    that is what makes an interrupted-and-resumed run end with exactly the same weights."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index) % 2**63)
            return self.dataset[index]


def epoch_batches(n: int, seed: int, epoch: int, steps: int, batch: int, rank: int = 0,
                  world: int = 1, skip: int = 0) -> list[list[int]]:
    """The sample indices of each of this process's ``steps`` batches in ``epoch``: a
    shuffle fixed by ``seed`` and ``epoch`` (so a resumed run sees the same order), cut
    into ``steps`` global batches of ``batch * world``, this ``rank``'s share of each, the
    first ``skip`` batches left out (those a resumed run already trained)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    usable = order[: steps * batch * world].view(steps, world, batch)
    return [b[rank].tolist() for b in usable][skip:]


def iterate(loader: DataLoader):
    """Iterate a DataLoader; with 0 workers, fetch each batch with one thread. Per-sample
    transforms are many tiny tensor ops, and spreading each over several threads costs
    more in synchronisation than it saves (a horizontal flip of one 180x240 image: 36 ms
    with 2 threads on a busy 2-core machine, 0.1 ms with 1)."""
    it = iter(loader)
    while True:
        if loader.num_workers == 0:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                batch = next(it, None)
            finally:
                torch.set_num_threads(threads)
        else:
            batch = next(it, None)
        if batch is None:
            return
        yield batch
