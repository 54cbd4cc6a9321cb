"""``python -m cli``: the ``fingerprint`` command."""

from cli import main

main(prog_name="fingerprint")
