"""Where an input came from, for the provenance a dispute report records: the file's sha256 and,
for a file that ``fingerprint probe run`` wrote, how the suspect was probed.

A probe run's lines carry ``endpoint``, ``model``, ``params``, ``timestamp`` and ``status``
(probing.output); this reads them back without depending on the probing package, so a report
can say which endpoint and model answered, with which parameters, and when.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from fingerprint import checksum
from fingerprint.errors import InputError
from fingerprint.io import BLANK, decode_json_line, input_format, open_input, source_name


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """sha256 of a regular file's bytes as stored (compressed if it is); None for standard input,
    a pipe or a device, which cannot be read twice."""
    if not _regular_file(path):
        return None
    try:
        return checksum.file_sha256(path)
    except OSError:
        return None


def _regular_file(path: str | os.PathLike[str]) -> bool:
    """Not standard input, a pipe or a device: a file that can be read twice."""
    try:
        return str(path) != "-" and stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def probe_details(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """How the suspect was probed, if ``path`` is a probe run's output; else None.

    Endpoints, models and request parameters as sets (a resumed run may add more), the first and
    last answer's timestamp, and how many prompts were answered and how many failed."""
    if not _regular_file(path) or input_format(path) != "json":
        return None
    try:
        return _probe_lines(path)
    except InputError:  # not JSON Lines (a JSON array, say): not a probe run's output
        return None


def _probe_lines(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    name = source_name(path)
    endpoints: set[str] = set()
    models: set[str] = set()
    params: list[dict[str, Any]] = []
    times: list[str] = []
    answered = failed = 0
    with open_input(path, name) as stream:
        for number, raw in enumerate(stream, start=1):
            value = decode_json_line(raw, name, number)
            if value is BLANK or not isinstance(value, dict) or "endpoint" not in value:
                return None if number == 1 else _details(endpoints, models, params, times,
                                                         answered, failed)
            endpoints.add(str(value["endpoint"]))
            models.add(str(value.get("model")))
            if value.get("params") not in params:
                params.append(value.get("params"))
            if isinstance(value.get("timestamp"), str):
                times.append(value["timestamp"])
            answered += value.get("status") != "failed"
            failed += value.get("status") == "failed"
    return _details(endpoints, models, params, times, answered, failed) if answered or failed \
        else None


def _details(endpoints: set[str], models: set[str], params: list[dict[str, Any]],
             times: list[str], answered: int, failed: int) -> dict[str, Any]:
    return {"endpoints": sorted(endpoints), "models": sorted(models), "params": params,
            "first_answer": min(times) if times else None,
            "last_answer": max(times) if times else None,
            "answered": answered, "failed": failed}
