"""Test a task with many simulated nodes, in one process, against the real ledger state machine.

``simulate`` runs the author's real ``Task`` code on N virtual nodes (each its own ``Task``
instance and in-memory store) through the same round schedule a real node follows
(``pykoii.node.schedule``). Every transaction is really signed with a key derived from the seed,
verified with ``verify_envelope`` and applied with ``apply_transaction``; the slot counter is
moved by hand, so nothing sleeps. The same arguments give a byte-identical transaction log.

>>> from pykoii.testing import simulate
>>> result = simulate("examples/hello_world", nodes=5, rounds=4, faulty=1)   # doctest: +SKIP
>>> result.ok, result.failed                                                 # doctest: +SKIP
(True, [])
>>> result.slashed(result.faulty_keys[0]) > 0                                # doctest: +SKIP
True

Node behaviours: **faulty** nodes submit a corrupted proof (their audits stay honest), **lazy
auditors** never vote (on proofs or lists), **offline** nodes do nothing after staking. Which nodes
get which behaviour is drawn from the seed.

The result checks three incentive properties (``result.properties``):

- ``honest nodes never slashed``: no node that submitted the task's own proof lost stake;
- ``payouts within bounty``: no round paid more than ``bounty_amount_per_round``;
- ``faulty submitters caught``: every corrupted proof of a paid round was slashed.

The package: ``engine.py`` (``Simulation``, the slot loop), ``nodes.py`` (the virtual nodes and
their behaviours), ``result.py`` (``SimulationResult`` and its property checks) and ``report.py``
(``render``, the text ``pykoii simulate`` prints).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import TaskConfig, load_config
from ..errors import ConfigError
from ..sdk import Task, load_task
from ..taskenv import use_environment
from .engine import DEFAULT_SLOT_MS, Simulation
from .nodes import (
    COLLUDER,
    FAULTY,
    HONEST,
    LAZY,
    OFFLINE,
    WITHHOLDER,
    FaultyBehaviour,
    MemoryBlobs,
    MemoryStore,
    SimulatedNode,
    StateReader,
    corrupt,
)
from .report import render
from .result import PHASES, PropertyCheck, RoundReport, SimulationResult


def simulate(task: str | Path | Task, **options: Any) -> SimulationResult:
    """Run a task on simulated nodes for some rounds, then settle every round.

    Takes the arguments of ``simulate_async``. Cannot be called from a running event loop; use
    ``simulate_async`` there.
    """
    return asyncio.run(simulate_async(task, **options))


async def simulate_async(
    task: str | Path | Task,
    *,
    nodes: int = 5,
    rounds: int = 3,
    faulty: int = 0,
    lazy_auditors: int = 0,
    offline: int = 0,
    colluding: float = 0.0,
    withholding: int = 0,
    seed: int = 0,
    stake: int | None = None,
    config: TaskConfig | str | Path | None = None,
    variables: Mapping[str, str] | None = None,
    node_variables: Mapping[int, Mapping[str, str]] | None = None,
    roles: Mapping[int, str] | None = None,
    faulty_behaviour: Any = None,
    slot_ms: float = DEFAULT_SLOT_MS,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Run a task on ``nodes`` simulated nodes for ``rounds`` rounds, then settle every round.

    ``task`` is a task folder (with ``task.py`` and ``config-task.yml``), a ``task.py`` path, or a
    ``Task`` instance (then pass ``config``). ``stake`` is each node's stake in ROE (default: twice
    ``minimum_stake_amount``). ``variables`` go to every node, ``node_variables`` (``{index: {NAME:
    VALUE}}``) to one node on top. ``roles`` (``{index: "faulty"}``) fixes some nodes' behaviour; the
    ``faulty``/``lazy_auditors``/``offline`` counts not covered by it are drawn from the seed, and so
    are the adversaries (docs/protocol.md §8): ``colluding`` (a fraction of the nodes) submit garbage,
    defend each other, accuse every honest candidate they may and send lists that pay only them;
    ``withholding`` nodes never reveal their beacon secret.
    ``faulty_behaviour`` says what faulty nodes do (``FaultyBehaviour``: a Task, variables or a proof
    hook; default: a corrupted proof). ``slot_ms`` is the virtual slot length phase durations are
    counted in. ``progress`` gets one line per round.
    """
    if isinstance(task, Task):
        instance = task
        if config is None:
            raise ConfigError(
                "simulate() got a Task instance but no config; pass config=TaskConfig or a path"
            )
    else:
        path = Path(task)
        use_environment(path if path.is_dir() else path.parent)  # its requirements.txt, as a node does
        instance = load_task(path)
        if config is None:
            config = path if path.is_dir() else path.parent
    if not isinstance(config, TaskConfig):
        config = load_config(config)
    simulation = Simulation(
        instance,
        config,
        nodes=nodes,
        rounds=rounds,
        faulty=faulty,
        lazy_auditors=lazy_auditors,
        offline=offline,
        colluding=colluding,
        withholding=withholding,
        seed=seed,
        stake=stake,
        variables=variables,
        node_variables=node_variables,
        roles=roles,
        faulty_behaviour=faulty_behaviour,
        slot_ms=slot_ms,
        progress=progress,
    )
    return await simulation.run_async()


__all__ = [
    "COLLUDER",
    "DEFAULT_SLOT_MS",
    "FAULTY",
    "HONEST",
    "LAZY",
    "OFFLINE",
    "PHASES",
    "WITHHOLDER",
    "FaultyBehaviour",
    "MemoryBlobs",
    "MemoryStore",
    "PropertyCheck",
    "RoundReport",
    "SimulatedNode",
    "Simulation",
    "SimulationResult",
    "StateReader",
    "corrupt",
    "render",
    "simulate",
    "simulate_async",
]
