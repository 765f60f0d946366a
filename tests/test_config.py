"""config-task.yml: Koii's field names, exact KOII amounts, errors that name field, value and rule."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from pykoii.config import (
    create_task_fields,
    koii_to_roe,
    load_config,
    parse_config,
    roe_to_koii,
    update_task_fields,
)
from pykoii.errors import ConfigError
from pykoii.keys import Keypair, verify_envelope
from pykoii.ledger import LedgerParams, LedgerState, apply_transaction

ROOT = Path(__file__).resolve().parent.parent
BASE = """
task_name: Hello World
description: A task
round_time: 12
submission_window: 4
audit_window: 4
minimum_stake_amount: 1.9
total_bounty_amount: 100
bounty_amount_per_round: 0.1
"""


def config_with(**changes: str) -> str:
    lines = [line for line in BASE.strip().splitlines() if line.split(":")[0] not in changes]
    return "\n".join(lines + [f"{key}: {value}" for key, value in changes.items()])


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value


def test_amounts_are_exact_koii_to_roe():
    config = parse_config(BASE)
    assert config.minimum_stake_amount == 1_900_000_000
    assert config.bounty_amount_per_round == 100_000_000
    assert config.total_bounty_amount == 100 * 10**9
    # 0.1 + 0.2 as floats is 0.30000000000000004; read from the text it is exact.
    assert (
        parse_config(config_with(bounty_amount_per_round="0.300000001")).bounty_amount_per_round
        == 300_000_001
    )
    assert koii_to_roe("1_000.5") == 1_000_500_000_000
    assert koii_to_roe(Decimal("0.000000001")) == 1
    assert roe_to_koii(1_500_000_000) == "1.5" and roe_to_koii(1) == "0.000000001" and roe_to_koii(0) == "0"


@pytest.mark.parametrize(
    ("changes", "field", "value", "accepted"),
    [
        (
            {"minimum_stake_amount": "0.0000000001"},
            "minimum_stake_amount",
            "0.0000000001",
            "9 decimal places",
        ),
        ({"minimum_stake_amount": "-1"}, "minimum_stake_amount", "-1", "at least 0"),
        ({"total_bounty_amount": "lots"}, "total_bounty_amount", "lots", "an amount in KOII"),
        (
            {"bounty_amount_per_round": "200"},
            "bounty_amount_per_round",
            "200",
            "at most total_bounty_amount (100 KOII)",
        ),
        ({"round_time": "5"}, "round_time", "5", "at least submission_window + audit_window + 2 = 10 slots"),
        ({"audit_window": "0"}, "audit_window", "0", "a whole number from 2"),
        ({"submission_window": "2.5"}, "submission_window", "2.5", "a whole number"),
        ({"task_type": "KPL"}, "task_type", "KPL", "KOII (KPL token tasks are not supported"),
        ({"task_type": "SOL"}, "task_type", "SOL", "KOII"),
        ({"task_executable_network": "FTP"}, "task_executable_network", "FTP", "IPFS, ARWEAVE, DEVELOPMENT"),
        ({"task_name": "'" + "x" * 25 + "'"}, "task_name", "x" * 25, "at most 24 characters"),
        ({"environment": "STAGING"}, "environment", "STAGING", "TEST, PRODUCTION"),
        ({"space": "51"}, "space", "51", "from 0.1 to 50"),
        ({"allowed_failed_distributions": "17"}, "allowed_failed_distributions", "17", "0 to 16"),
        ({"sample_size": "0"}, "sample_size", "0", "from 1 to 64"),
        ({"requirementsTags": "[{type: GPU, value: x}]"}, "requirementsTags[0].type", "GPU", "TASK_VARIABLE"),
        (
            {"requirementsTags": "[{type: TASK_VARIABLE}]"},
            "requirementsTags[0].value",
            "",
            "a value (required",
        ),
        ({"tags": "AI"}, "tags", "AI", "a list of strings"),
    ],
)
def test_errors_name_field_value_and_what_is_accepted(changes, field, value, accepted):
    error = error_for(config_with(**changes))
    message = str(error)
    assert error.field == field
    assert f"{field} is {value}" in message or f"{field} is {value!r}" in message, message
    assert accepted in message and "accepted:" in message
    assert "config-task.yml" in message


def test_missing_and_unknown_fields():
    error = error_for(BASE.replace("round_time: 12\n", ""))
    assert error.field == "round_time" and "round_time is missing" in str(error)
    error = error_for(BASE + "round_tme: 3\n")
    assert "unknown field 'round_tme' (did you mean round_time?)" in str(error)
    assert "not valid YAML" in str(error_for("task_name: [unclosed"))
    assert "must be a mapping" in str(error_for("- a\n- b\n"))


def test_load_config_from_folder_or_file_and_missing(tmp_path):
    example = ROOT / "examples" / "hello_world"
    assert load_config(example) == load_config(example / "config-task.yml")
    with pytest.raises(ConfigError, match="no task config at .*config-task.yml"):
        load_config(tmp_path)


def test_hello_world_config_metadata_and_variables():
    config = load_config(ROOT / "examples" / "hello_world")
    assert config.task_variables() == ["FAULTY"]
    metadata = config.metadata()
    assert metadata["requirementsTags"][0]["type"] == "TASK_VARIABLE" and metadata["environment"] == "TEST"


def test_create_task_fields_are_accepted_by_the_ledger():
    config = parse_config(BASE + "requirementsTags:\n  - {type: CPU, value: 4-core}\nsample_size: 3\n")
    fields = create_task_fields(config, task_audit_program="bafkreiexample")
    assert fields["requirements_tags"] == [{"type": "CPU", "value": "4-core", "description": ""}]
    assert fields["task_description"] == "A task" and fields["sample_size"] == 3
    state = LedgerState(params=LedgerParams(devnet=True))
    manager = Keypair.from_seed(b"m" * 32)
    for body in (
        {"type": "airdrop", "to": manager.public_key, "amount": 200 * 10**9},
        {"type": "create_task", **fields},
    ):
        tx = verify_envelope(manager.sign_transaction({**body, "recent_slot": 0}))
        receipt = apply_transaction(state, tx, 0)
    task = state.tasks[receipt.events[0].task_id]
    assert task.minimum_stake_amount == 1_900_000_000 and task.task_audit_program == "bafkreiexample"
    update = update_task_fields(config, task.task_id)
    assert "total_bounty_amount" not in update and update["task_id"] == task.task_id


def test_long_description_is_cut_to_the_ledger_limit_but_kept_in_metadata():
    text = "d" * 100
    config = parse_config(config_with(description=text))
    assert create_task_fields(config)["task_description"] == "d" * 64
    assert config.metadata()["description"] == text
