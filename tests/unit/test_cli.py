"""The command line: every option documented with its environment variable; bad input refused."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from datasync_operator import __version__
from datasync_operator.cli import main, run


def test_run_help_documents_every_option_and_its_env_var() -> None:
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for param in run.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.opts[-1] in result.output
        assert param.help, f"{param.name} has no help text"
        assert isinstance(param.envvar, str) and param.envvar.startswith("DATASYNC_OPERATOR_")
        assert param.envvar in result.output, f"{param.envvar} missing from --help"


def test_version_command_and_flag() -> None:
    runner = CliRunner()
    assert __version__ in runner.invoke(main, ["version"]).output
    assert __version__ in runner.invoke(main, ["--version"]).output


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        ([], {}, "--namespace NAME"),
        (["-n", "a", "-A"], {}, "mutually exclusive"),
        (["-A", "--retry-base-delay", "0"], {}, "--retry-base-delay"),
        (["-A", "--retry-base-delay", "10", "--retry-max-delay", "5"], {}, "--retry-max-delay"),
        (["-A"], {"DATASYNC_OPERATOR_LOG_FORMAT": "xml"}, "--log-format"),
        (["-A"], {"DATASYNC_OPERATOR_AWS_CONCURRENCY": "zero"}, "--aws-concurrency"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    args: list[str], env: dict[str, str], words: str
) -> None:
    result = CliRunner().invoke(main, ["run", *args], env=env)
    assert result.exit_code == 2
    assert words in result.output


def test_python_dash_m_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "datasync_operator", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert re.search(r"run\s+Run the operator", done.stdout)
