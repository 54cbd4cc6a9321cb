"""The README stays true to the code (in the spirit of sqlite-utils' documentation tests): every
command and every option is documented, every command and option has help, and the Python
examples use only the public API (each package's ``__all__``)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import click
import pytest

from cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group = main, path: tuple[str, ...] = ("fingerprint",)):
    for name, command in sorted(group.commands.items()):
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))


COMMANDS = list(commands())
LEAVES = [(path, c) for path, c in COMMANDS if not isinstance(c, click.Group)]


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p[1:]) for p, _ in COMMANDS])
def test_every_command_has_help_and_is_in_the_readme(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    assert " ".join(path) in README, f"README does not mention '{' '.join(path)}'"


@pytest.mark.parametrize("path,command", LEAVES, ids=[" ".join(p[1:]) for p, _ in LEAVES])
def test_every_option_has_help_and_is_in_the_readme(path, command):
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("help", "version"):
            continue
        flags = [f for f in param.opts + param.secondary_opts if f.startswith("--")] or param.opts
        assert (param.help or "").strip(), f"{' '.join(path)} {flags[0]} has no help text"
        for flag in flags:
            assert re.search(re.escape(flag) + r"(?![\w-])", README), \
                f"README does not mention {' '.join(path)} {flag}"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_python_uses_only_public_names():
    blocks = python_blocks()
    assert blocks
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                public = set(getattr(module, "__all__", ()))
                if node.module.split(".")[0] in ("fingerprint", "index", "attribution",
                                                 "probing", "replay", "reports", "cli"):
                    names = [a.name for a in node.names]
                    submodules = [n for n in names
                                  if importlib.util.find_spec(f"{node.module}.{n}") is not None]
                    hidden = [n for n in names if n not in public and n not in submodules]
                    assert not hidden, f"README imports non-public {hidden} from {node.module}"
                    assert "." not in node.module or node.module == "fingerprint.watermark", \
                        f"README imports from the inner module {node.module}"


def test_the_docs_check_can_fail():
    """A command the README does not name would be caught."""
    assert "fingerprint no-such-command" not in README
    assert not re.search(re.escape("--no-such-flag") + r"(?![\w-])", README)
