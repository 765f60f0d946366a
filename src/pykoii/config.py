"""``config-task.yml``: load it, check it, and turn it into a ``create_task`` transaction.

The file uses Koii's field names (koii-reference §5.3). Amounts are written in KOII and read
exactly: ``1.9`` becomes 1 900 000 000 ROE through ``decimal.Decimal`` on the YAML text, never a
float. Every error is a ``ConfigError`` that names the field, the value found and what is accepted.

>>> config = parse_config('''
... task_name: Hello World
... round_time: 10
... audit_window: 3
... submission_window: 3
... minimum_stake_amount: 1.9
... total_bounty_amount: 100
... bounty_amount_per_round: 0.5
... ''')
>>> config.minimum_stake_amount
1900000000
>>> create_task_fields(config)["bounty_amount_per_round"]
500000000
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .ledger.bounds import (
    DEFAULT_ESCALATION_SIZE,
    DEFAULT_VOTE_PENALTY_PERCENT,
    MAX_ALLOWED_FAILED_DISTRIBUTIONS,
    MAX_ESCALATION_SIZE,
    MAX_SAMPLE_SIZE,
)
from .ledger.state import RequirementTag
from .ledger.tasks import (
    EXECUTABLE_NETWORKS,
    REQUIREMENT_TYPES,
)
from .ledger.types import ROE_PER_KOII

CONFIG_FILE = "config-task.yml"
TASK_TYPES = ("KOII",)
ENVIRONMENTS = ("TEST", "PRODUCTION")
MAX_NAME = 24
MAX_DESCRIPTION = 64
"""The ledger keeps the first 64 characters of ``description`` as ``task_description``."""

FIELDS = (
    "task_name",
    "author",
    "description",
    "markdownDescriptionPath",
    "repositoryUrl",
    "imageUrl",
    "infoUrl",
    "koiiOceanUrl",
    "task_executable_network",
    "task_audit_program",
    "round_time",
    "audit_window",
    "submission_window",
    "minimum_stake_amount",
    "task_type",
    "token_type",
    "total_bounty_amount",
    "bounty_amount_per_round",
    "allowed_failed_distributions",
    "space",
    "requirementsTags",
    "tags",
    "environment",
    "sample_size",
    "escalation_size",
    "vote_penalty_percent",
    "task_id",
    "migrationDescription",
)
"""Every field ``config-task.yml`` may hold."""


@dataclass(frozen=True)
class TaskConfig:
    """A checked ``config-task.yml``. Amounts are integers in ROE."""

    task_name: str
    round_time: int
    audit_window: int
    submission_window: int
    minimum_stake_amount: int
    total_bounty_amount: int
    bounty_amount_per_round: int
    author: str = ""
    description: str = ""
    repositoryUrl: str = ""  # noqa: N815 - Koii's field name
    imageUrl: str = ""  # noqa: N815
    infoUrl: str = ""  # noqa: N815
    koiiOceanUrl: str = ""  # noqa: N815
    task_executable_network: str = "IPFS"
    task_audit_program: str = "task.py"
    task_type: str = "KOII"
    allowed_failed_distributions: int = 3
    space: Decimal = Decimal("0.1")
    requirements_tags: tuple[RequirementTag, ...] = ()
    tags: tuple[str, ...] = ()
    environment: str = "TEST"
    sample_size: int = 5
    escalation_size: int = DEFAULT_ESCALATION_SIZE
    vote_penalty_percent: int = DEFAULT_VOTE_PENALTY_PERCENT
    task_id: str = ""
    migration_description: str = ""

    def task_variables(self) -> list[str]:
        """Names of the task variables an operator must supply (``TASK_VARIABLE`` tags)."""
        return [tag.value for tag in self.requirements_tags if tag.type == "TASK_VARIABLE" and tag.value]

    def metadata(self) -> dict[str, Any]:
        """Koii's ``metadata.json`` for this task."""
        return {
            "author": self.author,
            "description": self.description,
            "repositoryUrl": self.repositoryUrl,
            "imageUrl": self.imageUrl,
            "infoUrl": self.infoUrl,
            "koiiOceanUrl": self.koiiOceanUrl,
            "requirementsTags": [
                {"type": t.type, "value": t.value, "description": t.description}
                for t in self.requirements_tags
            ],
            "tags": list(self.tags),
            "environment": self.environment,
            "migrationDescription": self.migration_description,
        }


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML that reads numbers with a fraction as ``Decimal`` from their text, never as float."""


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal("NaN")


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


def _error(name: str, value: Any, accepted: str, path: str = "") -> ConfigError:
    where = f"{path}: " if path else ""
    return ConfigError(
        f"{where}{name} is {value!r}; accepted: {accepted}", field=name, received=value, accepted=accepted
    )


def koii_to_roe(value: Any, name: str = "amount", *, path: str = "") -> int:
    """An amount written in KOII (int, exact decimal or numeric string) as integer ROE.

    Raises ``ConfigError`` for a negative amount, more than 9 decimal places, or a non-number.
    """
    accepted = "an amount in KOII, at least 0, with at most 9 decimal places (e.g. 1.5)"
    if isinstance(value, bool) or value is None:
        raise _error(name, value, accepted, path)
    if isinstance(value, float):  # only if a caller passes a float in Python: read its shortest text
        value = repr(value)
    try:
        amount = Decimal(str(value).strip().replace("_", "")) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise _error(name, value, accepted, path) from None
    if not amount.is_finite() or amount < 0:
        raise _error(name, _shown(value), accepted, path)
    roe = amount * ROE_PER_KOII
    if roe != roe.to_integral_value():
        raise _error(name, _shown(value), accepted, path)
    return int(roe)


def roe_to_koii(roe: int) -> str:
    """ROE shown in KOII, exactly, without trailing zeros: ``1500000000`` → ``"1.5"``."""
    sign = "-" if roe < 0 else ""
    whole, frac = divmod(abs(int(roe)), ROE_PER_KOII)
    return f"{sign}{whole}" + (f".{frac:09d}".rstrip("0") if frac else "")


class _Number(str):
    """A number as written in the file: shown without quotes in error messages."""

    def __repr__(self) -> str:
        return str(self)


def _shown(value: Any) -> Any:
    return _Number(format(value, "f")) if isinstance(value, Decimal) else value


def _int(data: dict[str, Any], name: str, default: int | None, low: int, high: int | None, path: str) -> int:
    value = data.get(name, default)
    accepted = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
    if value is None:
        raise ConfigError(
            f"{path}: {name} is missing; accepted: {accepted}", field=name, received=None, accepted=accepted
        )
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise _error(name, _shown(value), accepted, path)
    return value


def _str(data: dict[str, Any], name: str, default: str, path: str, *, limit: int | None = None) -> str:
    value = data.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise _error(name, _shown(value), "text", path)
    if limit is not None and len(value) > limit:
        raise _error(name, value, f"at most {limit} characters", path)
    return value


def _choice(data: dict[str, Any], name: str, default: str, choices: tuple[str, ...], path: str) -> str:
    value = data.get(name, default)
    if value not in choices:
        raise _error(name, _shown(value), ", ".join(choices), path)
    return str(value)


def _amount(data: dict[str, Any], name: str, path: str) -> int:
    if name not in data or data[name] is None:
        accepted = "an amount in KOII, at least 0, with at most 9 decimal places (e.g. 1.5)"
        raise ConfigError(
            f"{path}: {name} is missing; accepted: {accepted}", field=name, received=None, accepted=accepted
        )
    return koii_to_roe(data[name], name, path=path)


def _tags(data: dict[str, Any], path: str) -> tuple[RequirementTag, ...]:
    raw = data.get("requirementsTags") or []
    accepted = f"a list of {{type, value, description}} with type one of {', '.join(REQUIREMENT_TYPES)}"
    if not isinstance(raw, list):
        raise _error("requirementsTags", raw, accepted, path)
    tags = []
    for index, item in enumerate(raw):
        name = f"requirementsTags[{index}]"
        if not isinstance(item, dict) or set(item) - {"type", "value", "description"}:
            raise _error(name, item, accepted, path)
        kind = item.get("type")
        if kind not in REQUIREMENT_TYPES:
            raise _error(f"{name}.type", kind, ", ".join(REQUIREMENT_TYPES), path)
        value = item.get("value", "")
        value = "" if value is None else str(value)
        if kind in (
            "TASK_VARIABLE",
            "GLOBAL_VARIABLE",
            "CPU",
            "RAM",
            "STORAGE",
            "ARCHITECTURE",
            "OS",
            "ADDON",
        ):
            if not value:
                raise _error(f"{name}.value", value, f"a value (required for type {kind})", path)
        if len(value) > 64:
            raise _error(f"{name}.value", value, "at most 64 characters", path)
        description = item.get("description", "")
        tags.append(RequirementTag(str(kind), value, "" if description is None else str(description)))
    return tuple(tags)


def parse_config(text: str, *, path: str = CONFIG_FILE) -> TaskConfig:
    """Check the text of a ``config-task.yml``; raise ``ConfigError`` naming the first bad field."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must be a mapping of Koii task fields (task_name: ..., round_time: ...); got {data!r}",
            path=path,
        )
    for name in data:
        if name not in FIELDS:
            close = difflib.get_close_matches(str(name), FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{path}: unknown field {name!r}{hint}; accepted fields: {', '.join(FIELDS)}",
                field=name,
                received=data[name],
            )
    task_type = data.get("task_type", "KOII")
    if task_type == "KPL":
        raise _error(
            "task_type",
            "KPL",
            "KOII (KPL token tasks are not supported by pykoii; rewards are paid in KOII)",
            path,
        )
    task_type = _choice(data, "task_type", "KOII", TASK_TYPES, path)
    name = _str(data, "task_name", "", path, limit=MAX_NAME)
    if not name:
        raise _error("task_name", data.get("task_name"), f"1 to {MAX_NAME} characters", path)
    submission_window = _int(data, "submission_window", None, 1, None, path)
    audit_window = _int(data, "audit_window", None, 2, None, path)
    round_time = _int(data, "round_time", None, 1, None, path)
    if round_time < submission_window + audit_window + 2:
        raise _error(
            "round_time",
            round_time,
            f"at least submission_window + audit_window + 2 = {submission_window + audit_window + 2} slots "
            "(the rest of the round is the judgement window, then one slot for payout)",
            path,
        )
    minimum_stake = _amount(data, "minimum_stake_amount", path)
    total = _amount(data, "total_bounty_amount", path)
    per_round = _amount(data, "bounty_amount_per_round", path)
    if total <= 0:
        raise _error("total_bounty_amount", _shown(data["total_bounty_amount"]), "more than 0 KOII", path)
    if not 0 < per_round <= total:
        raise _error(
            "bounty_amount_per_round",
            _shown(data["bounty_amount_per_round"]),
            f"more than 0 and at most total_bounty_amount ({roe_to_koii(total)} KOII)",
            path,
        )
    space = data.get("space", Decimal("0.1"))
    if isinstance(space, bool) or not isinstance(space, int | Decimal) or not Decimal("0.1") <= space <= 50:
        raise _error("space", _shown(space), "a size in MB from 0.1 to 50", path)
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _error("tags", tags, 'a list of strings, e.g. ["AI", "Web Crawling"]', path)
    markdown = _str(data, "markdownDescriptionPath", "", path)
    description = _str(data, "description", "", path)
    if markdown:
        file = Path(path).parent / markdown
        if not file.is_file():
            raise _error(
                "markdownDescriptionPath", markdown, "the path of a readable file next to the config", path
            )
        description = file.read_text()
    return TaskConfig(
        task_name=name,
        round_time=round_time,
        audit_window=audit_window,
        submission_window=submission_window,
        minimum_stake_amount=minimum_stake,
        total_bounty_amount=total,
        bounty_amount_per_round=per_round,
        author=_str(data, "author", "", path),
        description=description,
        repositoryUrl=_str(data, "repositoryUrl", "", path),
        imageUrl=_str(data, "imageUrl", "", path),
        infoUrl=_str(data, "infoUrl", "", path),
        koiiOceanUrl=_str(data, "koiiOceanUrl", "", path),
        task_executable_network=_choice(data, "task_executable_network", "IPFS", EXECUTABLE_NETWORKS, path),
        task_audit_program=_str(data, "task_audit_program", "task.py", path, limit=64) or "task.py",
        task_type=task_type,
        allowed_failed_distributions=_int(
            data, "allowed_failed_distributions", 3, 0, MAX_ALLOWED_FAILED_DISTRIBUTIONS, path
        ),
        space=Decimal(space),
        requirements_tags=_tags(data, path),
        tags=tuple(tags),
        environment=_choice(data, "environment", "TEST", ENVIRONMENTS, path),
        sample_size=_int(data, "sample_size", 5, 1, MAX_SAMPLE_SIZE, path),
        escalation_size=_int(data, "escalation_size", DEFAULT_ESCALATION_SIZE, 1, MAX_ESCALATION_SIZE, path),
        vote_penalty_percent=_int(data, "vote_penalty_percent", DEFAULT_VOTE_PENALTY_PERCENT, 0, 100, path),
        task_id=_str(data, "task_id", "", path),
        migration_description=_str(data, "migrationDescription", "", path),
    )


def load_config(path: str | Path) -> TaskConfig:
    """Read and check ``config-task.yml`` (``path`` may be the file or the task's folder)."""
    file = Path(path)
    if file.is_dir():
        file = file / CONFIG_FILE
    if not file.is_file():
        raise ConfigError(
            f"no task config at {file}; expected a {CONFIG_FILE} file (create one with `pykoii new NAME`)",
            path=str(file),
        )
    return parse_config(file.read_text(), path=str(file))


def create_task_fields(
    config: TaskConfig, *, task_audit_program: str | None = None, task_metadata: str = ""
) -> dict[str, Any]:
    """The fields of a ``create_task`` transaction (ledger names, amounts in ROE).

    ``task_audit_program`` overrides the config's (``pykoii task deploy`` passes the code's CID);
    ``task_metadata`` is the CID of the metadata blob, if uploaded.
    """
    return {
        "task_name": config.task_name,
        "task_description": config.description[:MAX_DESCRIPTION],
        "task_audit_program": task_audit_program or config.task_audit_program,
        "task_executable_network": config.task_executable_network,
        "total_bounty_amount": config.total_bounty_amount,
        "bounty_amount_per_round": config.bounty_amount_per_round,
        "round_time": config.round_time,
        "audit_window": config.audit_window,
        "submission_window": config.submission_window,
        "minimum_stake_amount": config.minimum_stake_amount,
        "allowed_failed_distributions": config.allowed_failed_distributions,
        "task_metadata": task_metadata,
        "requirements_tags": [
            {"type": t.type, "value": t.value, "description": t.description} for t in config.requirements_tags
        ],
        "sample_size": config.sample_size,
        "escalation_size": config.escalation_size,
        "vote_penalty_percent": config.vote_penalty_percent,
    }


def update_task_fields(
    config: TaskConfig, task_id: str, *, task_audit_program: str | None = None, task_metadata: str = ""
) -> dict[str, Any]:
    """The fields of an ``update_task`` transaction for ``task_id`` (the bounty is not changeable)."""
    fields = create_task_fields(config, task_audit_program=task_audit_program, task_metadata=task_metadata)
    del fields["total_bounty_amount"]
    return {**fields, "task_id": task_id, "migration_description": config.migration_description}


__all__ = [
    "CONFIG_FILE",
    "FIELDS",
    "TaskConfig",
    "create_task_fields",
    "koii_to_roe",
    "load_config",
    "parse_config",
    "roe_to_koii",
    "update_task_fields",
]
