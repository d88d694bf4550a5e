"""README.md's command table and `dlc --help` agree: every command in one is in the other, every option a
README row names is in that command's --help, every option and argument has a help text, and the help survives
a pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from dlc.cli import app, main

from conftest import ROOT, run_cli

ROW = re.compile(r"^\| `(dlc [^`]*)` \|")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
BOX_ROW = re.compile(r"^[│|]\s+([a-z][a-z-]*)\s{2,}\S")


def readme_rows() -> list[tuple[str, list[str]]]:
    """(command, options named in its usage cell) for each row of README's `## Commands` table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            usage = m.group(1).replace("\\|", "|")
            rows.append((usage.split()[1], OPTION.findall(usage)))
    return rows


def run_help(*argv: str, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # one row per command and option, nothing cut
    rc, out, err = run_cli(*argv, "--help")
    assert rc == 0, err
    return out


def help_commands(text: str) -> list[str]:
    """The command names in the Commands panel of `dlc --help`."""
    panel = text.split("Commands", 1)[1]
    return [m.group(1) for line in panel.splitlines() if (m := BOX_ROW.match(line))]


def click_commands() -> dict:
    import typer

    return typer.main.get_command(app).commands


def test_readme_table_parses():
    rows = readme_rows()
    assert len(rows) >= 13 and all(cmd.replace("-", "_").isidentifier() for cmd, _ in rows), rows
    assert ("run", ["--resume"]) in rows


def test_readme_and_help_list_the_same_commands(monkeypatch):
    listed = help_commands(run_help(monkeypatch=monkeypatch))
    assert len(listed) == len(set(listed)), listed
    readme = {cmd for cmd, _ in readme_rows()}
    assert set(listed) == readme, (f"in `dlc --help` only: {sorted(set(listed) - readme)}; "
                                   f"in README.md only: {sorted(readme - set(listed))}")
    assert set(listed) == set(click_commands())


@pytest.mark.parametrize("command,options", readme_rows(), ids=lambda v: v if isinstance(v, str) else None)
def test_readme_options_are_in_the_commands_help(command, options, monkeypatch):
    text = run_help(command, monkeypatch=monkeypatch)
    assert f"Usage: dlc {command}" in text
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]
    assert not missing, f"README.md's `dlc {command}` row names {missing}, which `dlc {command} --help` lacks"


@pytest.mark.parametrize("name", sorted(click_commands()))
def test_every_option_and_argument_has_help(name):
    command = click_commands()[name]
    first = (command.help or "").strip().split("\n\n")[0]
    assert first and "\n" not in first, f"dlc {name}: the one-line description in `dlc --help` is {first!r}"
    for param in command.params:
        assert (getattr(param, "help", None) or "").strip(), f"dlc {name}: {param.name} has no help text"


def test_help_through_a_pipe_has_no_colour_codes():
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE")}
    env["TERM"] = "xterm-256color"
    for argv in (["--help"], ["run", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "dlc", *argv], capture_output=True, text=True, env=env,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b[" not in proc.stdout and "Usage: dlc" in proc.stdout


def test_version_and_usage_errors(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dlc ")
    assert main(["run", "--backend", "jax", "x.dlspec"]) == 2
    err = capsys.readouterr().err
    assert "Usage: dlc run" in err and "dlc: error:" in err and "jax" in err and "Traceback" not in err
    assert main(["nope"]) == 2
    assert main([]) == 2  # the help, as a usage error
