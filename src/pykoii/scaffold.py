"""``pykoii new NAME``: a task folder with task.py, config-task.yml, tests and a README.

The generated tests run the task in the simulator (``pykoii.testing.simulate``) and pass as
generated; the author changes ``task.py`` and keeps them green.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,23}$")

TASK_PY = '''"""{title}: a pykoii task. Each phase gets a RoundContext (ctx) and may be sync or async.

In round R a node runs task(R); at the start of R+1 it submits submission(R) and audits the proofs
other nodes submitted for R; in R+2 the selected node sends the distribution list, the others
audit it, and the round is paid out. See docs/sdk.md.
"""

from pykoii.sdk import RoundContext, Task


class {cls}(Task):
    def setup(self, ctx: RoundContext) -> None:
        """Runs once when the task starts on a node."""

    def task(self, ctx: RoundContext) -> None:
        """The round's work. Store what the proof needs in ctx.store."""
        ctx.store.set("value", "Hello, World!")

    def submission(self, ctx: RoundContext) -> str:
        """The proof for ctx.round: a string of at most 512 bytes (often a CID)."""
        return ctx.store.get("value") or ""

    def audit(self, ctx: RoundContext, submission: str, submitter: str) -> bool:
        """Whether another node's proof for ctx.round is right."""
        return submission == "Hello, World!"

    # distribution(ctx, submitters, bounty) defaults to the seed's rule: 70 % of each invalid
    # submitter's stake is slashed and the bounty is split equally among the valid ones.
'''

CONFIG_YML = """# {title}: task configuration with Koii's field names. Amounts are in KOII.
task_name: "{title}"
author: ""
description: "{title}, a pykoii task."
repositoryUrl: ""
imageUrl: ""
infoUrl: ""
task_executable_network: "IPFS"
task_audit_program: "task.py"
task_type: "KOII"
# Slots (about 400 ms each on a real ledger): round_time >= submission_window + audit_window + 2.
round_time: 12
submission_window: 4
audit_window: 4
minimum_stake_amount: 2
total_bounty_amount: 100
bounty_amount_per_round: 1
allowed_failed_distributions: 3
space: 0.1
sample_size: 5
requirementsTags: []
tags: []
environment: "TEST"
"""

TEST_PY = '''"""Runs this task on simulated nodes against the real ledger state machine (no network)."""

from pathlib import Path

from pykoii.testing import simulate

TASK_DIR = Path(__file__).resolve().parent.parent


def test_honest_nodes_are_paid_every_round():
    result = simulate(TASK_DIR, nodes=5, rounds=3)
    assert result.ok, result.failed
    assert all(report.outcome == "paid" for report in result.reports)
    assert all(result.reward(key) > 0 for key in result.honest_keys)
    assert not result.slashes


def test_a_faulty_node_is_caught_and_slashed():
    result = simulate(TASK_DIR, nodes=5, rounds=3, faulty=1)
    assert result.ok, result.failed
    (faulty,) = result.faulty_keys
    assert result.slashed(faulty) > 0
    assert result.reward(faulty) == 0


def test_same_seed_same_log():
    first = simulate(TASK_DIR, nodes=4, rounds=2, faulty=1, seed=7)
    second = simulate(TASK_DIR, nodes=4, rounds=2, faulty=1, seed=7)
    assert first.log_bytes() == second.log_bytes()
'''

README = """# {title}

A [pykoii](https://example.org/pykoii) task.

- `task.py`: the phases (setup, task, submission, audit, distribution, routes).
- `config-task.yml`: round timing, stake and bounty (Koii's field names, amounts in KOII).
- `tests/test_task.py`: runs the task on simulated nodes.

```sh
pykoii simulate . --nodes 10 --rounds 5 --faulty 1   # watch it run, with a faulty node
python -m pytest tests                               # the task's own tests
```
"""


def create_task_folder(name: str, parent: str | Path = ".") -> Path:
    """Create ``parent/name`` with a working task; refuse an existing folder or a bad name."""
    if not NAME.match(name):
        raise ConfigError(
            f"task name is {name!r}; accepted: 1 to 24 letters, digits, '-' or '_', starting with a letter",
            field="name",
            received=name,
        )
    folder = Path(parent) / name
    if folder.exists():
        raise ConfigError(f"{folder} already exists; choose another name or remove it", path=str(folder))
    title = name.replace("_", " ").replace("-", " ").title()[:24]
    cls = "".join(part.capitalize() for part in re.split(r"[-_]", name)) or "MyTask"
    (folder / "tests").mkdir(parents=True)
    (folder / "task.py").write_text(TASK_PY.format(title=title, cls=cls))
    (folder / "config-task.yml").write_text(CONFIG_YML.format(title=title))
    (folder / "tests" / "test_task.py").write_text(TEST_PY)
    (folder / "README.md").write_text(README.format(title=title))
    return folder


__all__ = ["create_task_folder"]
