"""Typed errors across the process boundary between Ray workers and the driver.

Ray Data wraps an exception raised in a task in its own ``UserCodeException`` and does not keep
the original (measured with Ray 2.60: the driver sees neither its type nor its fields), so a
worker that meets a bad record would surface as an opaque Ray failure. Workers therefore catch
the toolkit's own errors (``FingerprintError``) and return them as data: the class's module and
name, ``args`` and attributes, JSON-encoded. The driver rebuilds the same error (an
``InputError`` naming file, line and field, as a local build raises) and raises it. Anything
else (a bug, a lost worker) stays Ray's exception and becomes an ``EngineError``.
"""

from __future__ import annotations

import importlib
import json

from fingerprint.errors import FingerprintError

# Only classes from the toolkit's own error modules are rebuilt from a payload.
ERROR_MODULES = ("fingerprint.errors", "index.errors", "distributed.errors")


def error_payload(error: FingerprintError) -> str:
    """The error as JSON: enough to rebuild it with its type, message and fields."""
    state = {k: v for k, v in vars(error).items() if _jsonable(v)}
    return json.dumps({"module": type(error).__module__, "name": type(error).__qualname__,
                       "args": [str(a) for a in error.args], "state": state})


def rebuild_error(payload: str) -> FingerprintError:
    """The error ``error_payload`` described; a plain FingerprintError if its class is not one
    of the toolkit's (the message is kept either way)."""
    data = json.loads(payload)
    cls: type = FingerprintError
    if data.get("module") in ERROR_MODULES:
        found = getattr(importlib.import_module(data["module"]), data.get("name", ""), None)
        if isinstance(found, type) and issubclass(found, FingerprintError):
            cls = found
    error = cls.__new__(cls)
    error.args = tuple(data.get("args", ()))
    error.__dict__.update(data.get("state", {}))
    return error


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
