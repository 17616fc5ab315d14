"""Thread settings (darkseg.utils.threads) and the ``--threads`` option of every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from darkseg.cli import COMMANDS, build_parser, wait_policy_env
from darkseg.errors import ConfigError
from darkseg.utils.threads import (
    ThreadChoice,
    apply_threads,
    cgroup_cpu_limit,
    choose_threads,
    free_cpus,
    passive_wait,
    usable_cpus,
)

SRC = Path(__file__).resolve().parents[1] / "src"


# ------------------------------------------------------------------------------------ choosing


def test_explicit_beats_environment_beats_default() -> None:
    env = {"OMP_NUM_THREADS": "3"}
    assert choose_threads(2, env, usable=4, free=4.0).threads == 2
    assert choose_threads(2, env, usable=4, free=4.0).source == "--threads"
    assert choose_threads(None, env, usable=4, free=4.0).threads == 3
    assert choose_threads(None, env, usable=4, free=4.0).source == "OMP_NUM_THREADS"
    default = choose_threads(None, {}, usable=4, free=4.0)
    assert (default.threads, default.source, default.warning) == (4, "default", None)
    assert choose_threads(None, {"OMP_NUM_THREADS": " "}, usable=4, free=4.0).source == "default"


def test_unknown_load_uses_every_usable_cpu() -> None:
    choice = choose_threads(None, {}, usable=6, free=None)
    assert (choice.threads, choice.warning) == (6, None)


@pytest.mark.parametrize("bad", [0, -2, True])
def test_bad_explicit_count_is_refused_naming_the_option(bad: int) -> None:
    with pytest.raises(ConfigError, match="--threads"):
        choose_threads(bad, {}, usable=2, free=2.0)


@pytest.mark.parametrize("text", ["abc", "0", "-1", "1.5"])
def test_bad_environment_count_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
        choose_threads(None, {"OMP_NUM_THREADS": text}, usable=2, free=2.0)


# ------------------------------------------------------------------------------ oversubscription


def test_free_cpus_from_the_load_average() -> None:
    assert free_cpus(2, 1.3, machine_cpus=2) == pytest.approx(0.7)
    assert free_cpus(2, 5.0, machine_cpus=2) == 0.0  # never negative
    assert free_cpus(2, 1.0, machine_cpus=16) == 2.0  # others run on CPUs this process may not use
    assert free_cpus(2, None, machine_cpus=2) is None


PASSIVE = {"OMP_WAIT_POLICY": "passive"}


def test_busy_machine_with_spinning_threads_cuts_the_default() -> None:
    # 2 CPUs, one busy with another job (load 1.3): one free core -> 1 thread
    choice = choose_threads(None, {}, usable=2, free=free_cpus(2, 1.3, machine_cpus=2))
    assert (choice.threads, choice.warning) == (1, None)
    # both busy: still at least one thread
    assert choose_threads(None, {}, usable=4, free=0.0).threads == 1
    assert choose_threads(None, {}, usable=4, free=2.6).threads == 3
    # a quiet machine keeps every usable CPU
    assert choose_threads(None, {}, usable=2, free=free_cpus(2, 0.2, machine_cpus=2)).threads == 2


def test_busy_machine_with_sleeping_threads_keeps_every_cpu() -> None:
    assert passive_wait(PASSIVE) and not passive_wait({}) and not passive_wait({"OMP_WAIT_POLICY": "ACTIVE"})
    assert choose_threads(None, PASSIVE, usable=2, free=0.7) == ThreadChoice(2, "default", 2, 0.7)
    assert choose_threads(2, PASSIVE, usable=2, free=0.0).warning is None


def test_user_count_that_would_spin_on_busy_cores_is_kept_with_a_one_line_warning() -> None:
    busy = free_cpus(2, 1.3, machine_cpus=2)
    choice = choose_threads(2, {}, usable=2, free=busy)
    assert choice.threads == 2
    assert choice.warning is not None and "\n" not in choice.warning
    assert "oversubscribed" in choice.warning and "--threads" in choice.warning
    env_choice = choose_threads(None, {"OMP_NUM_THREADS": "2"}, usable=2, free=busy)
    assert env_choice.threads == 2 and "OMP_NUM_THREADS" in (env_choice.warning or "")
    assert choose_threads(1, {}, usable=2, free=busy).warning is None
    assert choose_threads(2, {}, usable=2, free=2.0).warning is None


# ---------------------------------------------------------------------------------- usable CPUs


def test_usable_cpus_affinity_and_quota() -> None:
    assert usable_cpus(affinity={0, 1, 2, 3}, quota=None) == 4
    assert usable_cpus(affinity={0, 1, 2, 3}, quota=1.5) == 2  # quota rounded up
    assert usable_cpus(affinity={0, 1}, quota=8.0) == 2
    assert usable_cpus(affinity={0, 1, 2, 3}, quota=0.25) == 1
    assert usable_cpus(affinity=set(), cpu_count=3, quota=None) == 3


def test_cgroup_cpu_limit_file(tmp_path: Path) -> None:
    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert cgroup_cpu_limit(f) == pytest.approx(1.5)
    f.write_text("max 100000\n")
    assert cgroup_cpu_limit(f) is None
    f.write_text("garbage\n")
    assert cgroup_cpu_limit(f) is None
    assert cgroup_cpu_limit(tmp_path / "missing") is None


# ------------------------------------------------------------------------------------- applying


def test_apply_threads_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        done = apply_threads(1)
        assert torch.get_num_threads() == 1 and done["torch"] == 1
        assert done["torch_interop"] in (-1, 1)
    finally:
        torch.set_num_threads(before)


def test_wait_policy_keeps_the_users_setting() -> None:
    assert wait_policy_env({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert wait_policy_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {}


# ------------------------------------------------------------------------------ command line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_threads(command: str) -> None:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert any("--threads" in a.option_strings for a in sub._actions)


def test_threads_option_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser("demo").parse_args(["demo", "--threads", "2"]).threads == 2
    assert build_parser("train").parse_args(["train", "demo", "--threads", "1"]).threads == 1
    with pytest.raises(SystemExit) as exc:
        build_parser("predict").parse_args(["predict", "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads" in capsys.readouterr().err


def _run_cli(args: list[str], env_extra: dict[str, str]) -> tuple[dict, str]:
    code = (
        "import json, os, sys\n"
        "from darkseg.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "import torch\n"
        "print(json.dumps({'rc': rc, 'threads': torch.get_num_threads(),"
        " 'policy': os.environ.get('OMP_WAIT_POLICY')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_extra, PYTHONPATH=str(SRC))
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_command_applies_threads_and_passive_wait_policy() -> None:
    # `evaluate` without inputs stops at its own argument check, after the thread setup
    result, _ = _run_cli(["evaluate", "--threads", "1"], {})
    assert result == {"rc": 2, "threads": 1, "policy": "PASSIVE"}


def test_bad_environment_thread_count_is_one_line() -> None:
    result, err = _run_cli(["evaluate"], {"OMP_NUM_THREADS": "many", "OMP_WAIT_POLICY": "ACTIVE"})
    assert result["rc"] == 1 and result["policy"] == "ACTIVE"
    line = next(ln for ln in err.splitlines() if ln.startswith("darkseg evaluate:"))
    assert "OMP_NUM_THREADS='many'" in line
    assert "Traceback" not in err
