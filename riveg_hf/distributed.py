"""The process group riveg runs in: accelerate's ``PartialState``, also on machines without an accelerator.

``accelerate``'s ``PartialState()`` only forms a process group over an accelerator (or when told ``cpu=True``):
processes started by ``torchrun`` / ``accelerate launch --multi_gpu`` on a machine with no GPU each believe they
are the only one (``DistributedType.NO``), so every one of them would do all the work and write the same files.
:func:`partial_state` sees that the launcher started several processes (``WORLD_SIZE`` / ``PMI_SIZE`` /
``OMPI_COMM_WORLD_SIZE`` / ``MV2_COMM_WORLD_SIZE`` > 1) and then forms the CPU group (gloo, or MPI where torch
has it). Call it before any ``Accelerator`` is made: accelerate keeps one state per process, and an
``Accelerator`` made afterwards uses it.

On a CPU-only machine launch several processes with ``torchrun --nproc_per_node N -m riveg_hf.cli ...``:
``accelerate launch --cpu --num_processes N`` starts one process unless given an MPI host file
(``--mpirun_hostfile``), which is accelerate's own behaviour.
"""

from __future__ import annotations

from typing import Any

_WORLD_SIZE_VARIABLES = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]


def launched_world_size() -> int:
    """The number of processes the launcher started (1 when not launched by one)."""
    from accelerate.utils import get_int_from_env

    return get_int_from_env(_WORLD_SIZE_VARIABLES, 1)


def partial_state() -> Any:
    """accelerate's ``PartialState``; on a machine without an accelerator, a CPU process group when the launcher
    started several processes (see the module docstring)."""
    from accelerate import PartialState
    from accelerate.state import DistributedType

    state = PartialState()
    if state.distributed_type == DistributedType.NO and launched_world_size() > 1:
        PartialState._reset_state()
        state = PartialState(cpu=True)
    return state
