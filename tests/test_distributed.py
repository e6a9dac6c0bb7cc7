"""`seglab train` under torchrun: 2 CPU processes (gloo) give the same model as one
process on the same global batch."""
import socket
import subprocess
import sys

import pytest
import torch

from seglab.checkpoint import load_checkpoint

ARGS = ["--recipe", "quick", "--size", "60x80", "--crop", "60x80", "--augment", "off", "--width", "4",
        "--depth", "2", "--batchnorm", "off", "--epochs", "2", "--batch-size", "4", "--subset", "8",
        "--val-subset", "4", "--seed", "3", "--quiet", "--fast", "off"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batch(synthetic_camvid, tmp_path):
    common = ARGS + ["--root", str(synthetic_camvid), "--max-steps", "4"]
    single = subprocess.run([sys.executable, "-m", "seglab", "train", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                            "-m", "seglab", "train", *common, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one, two = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert one["step"] == two["step"] == 4
    for name, tensor in one["model"].items():
        assert torch.allclose(tensor, two["model"][name], atol=1e-5, rtol=1e-4), name
    for a, b in zip(one["history"], two["history"]):
        assert a["val_miou"] == pytest.approx(b["val_miou"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    # checkpoints are written once, by rank 0 only
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


VOTES = [(("bfloat16", None), None), (("bfloat16", "bfloat16"), "bfloat16"), ((None, None), None)]


def _vote(rank: int, world: int, init_file: str, results) -> None:
    import torch.distributed as dist

    from seglab.distributed import agreed_cpu_precision as _agreed_cpu_precision
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results[rank] = [_agreed_cpu_precision(votes[rank], world) for votes, _ in VOTES]
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_processes_train_in_bf16_only_when_every_one_timed_it_faster(tmp_path):
    # each process times bf16 for itself (hardware.cpu_bf16_pays_off); they must not mix precisions
    import torch.multiprocessing as mp
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_vote, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        agreed = [expected for _, expected in VOTES]
        assert dict(results) == {0: agreed, 1: agreed}
