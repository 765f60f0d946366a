"""A task's requirements.txt with hashes: checked, installed with pip --require-hashes into a
per-task virtual environment cached by the file's hash; simulate and task build use it the same way.
(Needs the PyPI registry for one tiny pinned package, six 1.16.0.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pykoii.cli import main
from pykoii.errors import ConfigError
from pykoii.taskenv import ensure_environment, read_requirements
from pykoii.testing import simulate

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello_world"
SIX_WHEEL = "sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
SIX = f"six==1.16.0 \\\n    --hash={SIX_WHEEL}\n"

USES_SIX = """
import six
from pykoii.sdk import Task


class UsesSix(Task):
    def task(self, ctx):
        ctx.store.set("value", six.ensure_str(b"Hello, World!"))

    def audit(self, ctx, submission, submitter):
        return submission == "Hello, World!"
"""


def task_folder(root: Path, requirements: str, code: str = USES_SIX) -> Path:
    folder = root / "task"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HELLO / "config-task.yml", folder)
    (folder / "task.py").write_text(code)
    (folder / "requirements.txt").write_text(requirements)
    return folder


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("six\n", "not pinned with =="),
        ("six>=1.0 --hash=sha256:00\n", "not pinned with =="),
        ("six==1.16.0\n", "has no --hash"),
        ("-e .\n", "option '-e' in"),
        (f"--index-url https://example.org/simple\nsix==1.16.0 --hash={SIX_WHEEL}\n", "option '--index-url'"),
        ("six==1.16.0 --hash=md5:00\n", "option '--hash=md5:00'"),
        ("https://example.org/six.whl\n", "not pinned with =="),
    ],
)
def test_requirements_must_be_pinned_with_hashes(tmp_path: Path, line: str, says: str) -> None:
    folder = task_folder(tmp_path, line)
    with pytest.raises(ConfigError, match="requirements.txt: ") as caught:
        read_requirements(folder)
    assert says in str(caught.value) and "accepted: NAME==VERSION --hash=sha256:<hex>" in str(caught.value)


def test_comments_and_continuations_are_read(tmp_path: Path) -> None:
    folder = task_folder(tmp_path, f"# the one dependency\n{SIX}\n")
    requirements = read_requirements(folder)
    assert requirements is not None and requirements.pins == ("six==1.16.0",)
    assert read_requirements(tmp_path) is None  # no file: no environment


def test_environment_is_installed_once_per_file_hash(tmp_path: Path) -> None:
    requirements = read_requirements(task_folder(tmp_path, SIX))
    assert requirements is not None
    site = ensure_environment(requirements, tmp_path / "cache")
    assert (site / "six.py").is_file()
    assert site.is_relative_to(tmp_path / "cache" / requirements.digest)
    marker = tmp_path / "cache" / requirements.digest / ".pykoii-complete"
    stamp = marker.stat().st_mtime_ns
    assert ensure_environment(requirements, tmp_path / "cache") == site
    assert marker.stat().st_mtime_ns == stamp  # cached: pip did not run again


def test_a_wrong_hash_is_refused_with_pips_words_and_leaves_nothing(tmp_path: Path) -> None:
    requirements = read_requirements(task_folder(tmp_path, "six==1.16.0 --hash=sha256:" + "0" * 64 + "\n"))
    assert requirements is not None
    with pytest.raises(ConfigError, match="pip could not install it") as caught:
        ensure_environment(requirements, tmp_path / "cache")
    assert "HASH" in str(caught.value).upper()
    assert not (tmp_path / "cache" / requirements.digest).exists()


def test_simulate_and_task_build_install_the_requirements(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = task_folder(tmp_path, SIX)
    result = simulate(folder, nodes=3, rounds=2, faulty=1)
    assert result.ok and result.task_errors == [], result.properties
    assert main(["task", "build", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "requirements.txt: 1 pinned package(s) install with hashes" in out and str(tmp_path / "xdg") in out


def test_task_build_refuses_unhashed_requirements(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = task_folder(tmp_path, "six==1.16.0\n")
    assert main(["task", "build", str(folder)]) != 0
    assert "has no --hash" in capsys.readouterr().err
    assert not (folder / "dist").exists()
