"""Where this process sits and how it talks to the others: SageMaker hosts, DDP rendezvous, threads.

Several hosts (``SM_HOSTS``) or GPUs (``SM_NUM_GPUS``) mean real
DistributedDataParallel: one process per GPU (or one per host on CPU),
rendezvous at ``MASTER_ADDR`` (default: the first host) and ``MASTER_PORT``
(default 29500), nccl on GPU and gloo on CPU. Rank 0 writes checkpoints, the
model directory and the final metrics.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger("train")

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class Cluster:
    """SageMaker hosts x local processes (one per GPU, or one on CPU)."""

    hosts: tuple[str, ...]
    host_index: int
    processes_per_host: int
    local_rank: int
    use_cuda: bool

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.processes_per_host

    @property
    def rank(self) -> int:
        return self.host_index * self.processes_per_host + self.local_rank

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.use_cuda else torch.device("cpu")

    @property
    def cpus_per_process(self) -> int:
        """This host's CPUs (``SM_NUM_CPUS``: a shared runner gives each job its fair share) per process."""
        cpus = int(os.environ.get("SM_NUM_CPUS", os.cpu_count() or 1))
        return max(1, cpus // self.processes_per_host)


def cluster_from_env(local_rank: int = 0) -> Cluster:
    hosts = tuple(json.loads(os.environ.get("SM_HOSTS", '["algo-1"]')) or ["algo-1"])
    current = os.environ.get("SM_CURRENT_HOST", hosts[0])
    if current not in hosts:
        raise ValueError(f"SM_CURRENT_HOST {current!r} is not in SM_HOSTS {list(hosts)}")
    use_cuda = torch.cuda.is_available()
    gpus = int(os.environ.get("SM_NUM_GPUS", torch.cuda.device_count() if use_cuda else 0))
    return Cluster(hosts, hosts.index(current), max(1, gpus) if use_cuda else 1, local_rank, use_cuda)


def set_compute_threads(cluster: Cluster) -> int:
    """One intra-op thread per CPU this process owns: the data is in memory, so nothing else competes."""
    if not cluster.use_cuda:
        torch.set_num_threads(cluster.cpus_per_process)
    return torch.get_num_threads()


def init_distributed(cluster: Cluster) -> None:
    if not cluster.distributed:
        return
    address = os.environ.get("MASTER_ADDR", cluster.hosts[0])
    port = int(os.environ.get("MASTER_PORT", DEFAULT_MASTER_PORT))
    backend = "nccl" if cluster.use_cuda else "gloo"
    if cluster.use_cuda:
        torch.cuda.set_device(cluster.local_rank)
    logger.info(
        "distributed: backend=%s world_size=%d rank=%d rendezvous=%s:%d",
        backend,
        cluster.world_size,
        cluster.rank,
        address,
        port,
    )
    dist.init_process_group(
        backend, init_method=f"tcp://{address}:{port}", rank=cluster.rank, world_size=cluster.world_size
    )


def shutdown_distributed(cluster: Cluster) -> None:
    if cluster.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(model: nn.Module, cluster: Cluster) -> None:
    """Give every rank rank 0's BatchNorm statistics (each rank's last forward updated its own)."""
    if cluster.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(values: list[float], cluster: Cluster) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=cluster.device)
    if cluster.distributed:
        dist.all_reduce(tensor)
    return tensor.tolist()
