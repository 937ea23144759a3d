"""Two local "hosts" train one model together with DistributedDataParallel over 127.0.0.1 (gloo)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TRAIN_SCRIPT, tiny_train_argv, train_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HOSTS = '["algo-1","algo-2"]'
# The smallest set that still gives each rank two optimizer steps (batch 4 of its 8 images), so the
# replicas would drift apart if gradients were not all-reduced; every step costs seconds on a CPU.
CLASSES, PER_CLASS, BATCH_SIZE = 4, 4, 4
TRAIN_IMAGES = CLASSES * PER_CLASS
SHARD = re.compile(r"rank=(\d) world_size=(\d) trained_images_last_epoch_this_rank=(\d+)")
# train.py's own main, plus one line: each rank saves the weights it ended with, for the comparison.
KEEP_FINAL_WEIGHTS = (
    "import sys, torch, train\n"
    "outcome = train.main(sys.argv[2:])\n"
    "torch.save(outcome.model.state_dict(), sys.argv[1])\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_dataset_dir(tmp_path_factory):
    from sample_data import generate

    return generate(tmp_path_factory.mktemp("ddp_dataset"), CLASSES, PER_CLASS, 40, seed=0, per_class_eval=1)


def test_two_processes_train_one_model(ddp_dataset_dir, tmp_path):
    port = str(free_port())
    processes = []
    for host in ("algo-1", "algo-2"):
        root = tmp_path / host
        argv = tiny_train_argv(
            ddp_dataset_dir,
            root / "model",
            root / "checkpoints",
            root / "output",
            epochs=1,
            batch_size=BATCH_SIZE,
            export_onnx="false",
        )
        env = train_env(
            SM_HOSTS=HOSTS,
            SM_CURRENT_HOST=host,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(TRAIN_SCRIPT.parent),
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", KEEP_FINAL_WEIGHTS, str(tmp_path / f"{host}.pt"), *argv],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=480)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-4000:]

    ranks = {}
    for output in outputs:
        assert "backend=gloo world_size=2" in output
        rank, world_size, images = SHARD.search(output).groups()
        ranks[int(rank)] = (int(world_size), int(images))
    assert set(ranks) == {0, 1}
    # DistributedSampler's shards: each rank trained on half the data...
    assert ranks[0] == ranks[1] == (2, TRAIN_IMAGES // 2)
    # ...and all-reduced gradients kept the two replicas identical, BatchNorm statistics included.
    first, second = (torch.load(tmp_path / f"{host}.pt", weights_only=True) for host in ("algo-1", "algo-2"))
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor.cpu(), second[name].cpu()), name
    # Rank 0 alone reports and saves.
    assert "[metrics] best_valid_accuracy=" in outputs[0] and "[metrics]" not in outputs[1]
    assert (tmp_path / "algo-1" / "model" / "model.pth").is_file()
    assert not (tmp_path / "algo-2" / "model").exists()
