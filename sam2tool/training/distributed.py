"""Inference on several devices: the processes of one command, joined with Lightning Fabric (DDP).

``evaluate --devices N`` shards its videos over N processes, one per GPU or N on the CPU. They talk
over gloo on the CPU and NCCL on GPUs (Lightning's defaults). Started from the command line, this
process is rank 0 and Lightning re-runs the command for the other ranks, as it does for ``train
--strategy ddp``; under torchrun and SLURM the processes are already there and each joins as its
rank (``--devices`` is then the number of processes per node; the number of nodes is the
launcher's).

Each rank works on ``items[rank::world_size]``; :meth:`Ranks.succeeded` then gathers every rank's
outcome, so that one rank's failure stops all of them instead of leaving the others waiting, and
rank 0 reports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sam2tool.errors import Sam2ToolError, UsageError
from sam2tool.models.tracking import resolve_device

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variables that hold a process's global rank, as Lightning reads them.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def environment_rank() -> int:
    """The global rank the launcher gave this process (0 when there is none), before any process group exists.

    A command re-run by Lightning for rank 1 and up, or started by torchrun or srun, knows its rank
    from the environment: what it prints for the user (progress, tables) only rank 0 prints.
    """
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


@dataclass(frozen=True)
class Ranks:
    """The processes of a command on several devices, as this one sees them.

    Attributes:
        rank: This process's global rank.
        world_size: How many processes there are.
        device: The torch device this rank runs on (``cpu``, ``cuda:1``, ...), or ``auto`` in one process.

    """

    rank: int = 0
    world_size: int = 1
    device: str = "auto"

    @property
    def is_zero(self) -> bool:
        """Rank 0: the process that writes the results."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """The share of ``items`` of this rank: every ``world_size``-th from its rank (empty for an idle rank)."""
        return list(items[self.rank :: self.world_size])

    def succeeded(self, error: BaseException | None) -> bool:
        """Whether every rank succeeded; all ranks call it after the same step (a collective).

        Rank 0 raises a failure of any rank (its own first, else the lowest failing rank's, with its
        class when it is a :class:`Sam2ToolError`); the other ranks return False and should stop
        without an error: a child process that exits with an error makes Lightning kill rank 0
        before it could say why.
        """
        if self.world_size == 1:
            if error is not None:
                raise error
            return True
        import torch.distributed as dist

        outcome = None if error is None else _portable(error)
        outcomes: list[Any] = [None] * self.world_size
        dist.all_gather_object(outcomes, outcome)
        failures = [(rank, failure) for rank, failure in enumerate(outcomes) if failure is not None]
        if not failures:
            return True
        if not self.is_zero:
            if error is not None:
                log.debug("rank %d failed; rank 0 reports it", self.rank, exc_info=error)
            return False
        if error is not None:
            raise error
        rank, (kind, message) = failures[0]
        raise kind(f"rank {rank} of {self.world_size}: {message}")


def _portable(error: BaseException) -> tuple[type[Sam2ToolError], str]:
    """An error as another process can rebuild it: a sam2tool error keeps its class (its exit code)."""
    if isinstance(error, Sam2ToolError):
        return type(error), str(error)
    return Sam2ToolError, f"{type(error).__name__}: {error}"


def _nodes(devices: int) -> int:
    """How many nodes the launcher started (torchrun: world size / processes per node; SLURM: nodes)."""
    from lightning.fabric.plugins.environments.slurm import SLURMEnvironment, _is_slurm_interactive_mode
    from lightning.fabric.plugins.environments.torchelastic import TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", devices))
        world = int(os.environ["WORLD_SIZE"])
        if per_node != devices or world % devices:
            raise UsageError(
                f"--devices {devices} under torchrun must be the number of processes per node (--nproc-per-node "
                f"{per_node}, {world} in all)"
            )
        return world // devices
    if SLURMEnvironment.detect() and not _is_slurm_interactive_mode():
        return int(os.environ.get("SLURM_NNODES", "1"))
    return 1


def _launched_by_cluster() -> bool:
    """Whether torchrun or a SLURM batch job started several processes for this command."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1


@contextlib.contextmanager
def ranks_on(devices: int, device: str = "auto") -> Iterator[Ranks]:
    """The processes of a command on ``devices`` devices of the kind ``device``, for the block.

    With one device (and no launcher that started several processes) this is this process alone,
    and Lightning is not involved. Otherwise Fabric launches the other ranks (or joins those
    torchrun or SLURM started) and joins a process group, left at the end of the block.

    Raises:
        UsageError: ``devices`` below 1, MPS with several devices, or more devices than there are,
            or counts that do not match what torchrun or SLURM started.

    """
    if devices < 1:
        raise UsageError(f"--devices {devices}: give 1 or more")
    if devices == 1 and not _launched_by_cluster():
        yield Ranks(device=device)
        return
    kind = resolve_device(device)
    if kind not in ("cpu", "cuda"):
        raise UsageError(f"--devices {devices} runs on CUDA GPUs or on the CPU, not {kind}; use --device cuda or cpu")
    import torch.distributed as dist
    from lightning.fabric import Fabric

    nodes = _nodes(devices)
    try:
        fabric = Fabric(accelerator=kind, devices=devices, num_nodes=nodes, strategy="ddp")
        fabric.launch()
    except (ValueError, RuntimeError) as exc:
        if dist.is_available() and dist.is_initialized():
            raise
        raise UsageError(f"--devices {devices} --device {device}: {exc}") from None
    log.info("rank %d of %d on %s", fabric.global_rank, fabric.world_size, fabric.device)
    try:
        yield Ranks(fabric.global_rank, fabric.world_size, str(fabric.device))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
