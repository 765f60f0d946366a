"""`pykoii new NAME` creates a task whose generated tests pass as generated."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pykoii.cli import main
from pykoii.config import load_config
from pykoii.sdk import load_task


def test_new_creates_a_working_task_whose_tests_pass(tmp_path, capsys):
    assert main(["new", "my_task", "--dir", str(tmp_path)]) == 0
    folder = tmp_path / "my_task"
    assert "created" in capsys.readouterr().out
    assert {p.name for p in folder.iterdir()} == {"task.py", "config-task.yml", "tests", "README.md"}
    assert load_config(folder).task_name == "My Task"
    assert type(load_task(folder)).__name__ == "MyTask"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout
    # and the simulate command runs it
    assert main(["simulate", str(folder), "--nodes", "4", "--rounds", "2", "--faulty", "1", "--quiet"]) == 0


@pytest.mark.parametrize("name", ["1bad", "has space", "x" * 25, ""])
def test_bad_names_are_one_line_errors(tmp_path, capsys, name):
    assert main(["new", name, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ConfigError" in err and "accepted" in err


def test_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["new", "taken", "--dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["new", "--help"], ["simulate", "--help"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main(command)
    assert info.value.code == 0
    assert "usage: pykoii" in capsys.readouterr().out
