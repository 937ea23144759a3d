"""Train a ResNet50 dog-breed classifier under the SageMaker script-mode contract.

One entry point for tuning trials and final training. Hyperparameters arrive
as ``--key value`` flags; data, model and output locations come from the
``SM_*`` environment and may be overridden by flags, so it also runs by hand::

    python model_scripts/train.py --train data/train --valid data/valid --test data/test \\
        --model-dir out/model --pretrained false --epochs 3 --image-size 64

The work is split by job, one module each (all beside this file, which the
toolkit runs with its directory on the path, so they ship in the same
``sourcedir.tar.gz``):

- ``training_args``: the command line (standard library only: ``--help`` imports no torch)
- ``training_cluster``: hosts, DistributedDataParallel rendezvous, compute threads
- ``training_data``: decode once into memory, augment on tensors, batches per rank
- ``training_model``: ResNet50, frozen stages, optimizer, schedule, precision (bf16 where the CPU has it)
- ``training_checkpoints``: resumable state after every epoch
- ``training_loop``: one epoch of training, one pass of evaluation, the Debugger hook
- ``training_export``: the servable model directory and its int8 ONNX model
- ``training_job``: one job from data to model directory (epochs, early stopping, outputs)
- ``training_telemetry``: the ``[metrics]`` and ``[timing]`` lines others read from the log
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # the "start" phase: interpreter up to data loading, imports included

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from training_args import parse_args  # noqa: E402
from training_telemetry import PhaseTimer  # noqa: E402

if TYPE_CHECKING:
    from training_job import JobOutcome


def _worker(local_rank: int, args: argparse.Namespace) -> JobOutcome:
    # torch and the rest are imported only once the arguments are known to be good.
    from training_cluster import cluster_from_env, init_distributed, shutdown_distributed
    from training_job import run

    timer = PhaseTimer(STARTED)
    cluster = cluster_from_env(local_rank)
    init_distributed(cluster)
    try:
        outcome = run(args, cluster, timer)
    finally:
        shutdown_distributed(cluster)
    timer.print()
    return outcome


def main(argv: list[str] | None = None) -> JobOutcome | None:
    """Run the job; in-process callers get its outcome (None when it ran in one process per GPU)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    args = parse_args(argv)
    from training_cluster import cluster_from_env

    cluster = cluster_from_env()
    if cluster.processes_per_host > 1:
        import torch.multiprocessing

        # One process per GPU on this host; SageMaker starts this script once per host.
        torch.multiprocessing.spawn(_worker, args=(args,), nprocs=cluster.processes_per_host)
        return None
    return _worker(0, args)


if __name__ == "__main__":
    main()
