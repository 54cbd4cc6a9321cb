"""Recorded outputs served as an OpenAI-compatible model, with injected faults: the suspect a
test (or the demo) probes. handler: the pure request -> reply function; server: it, on HTTP."""

from replay.errors import ReplayError
from replay.handler import (FAULT_KINDS, Reply, ReplayFaults, ReplayHandler, ReplayLog,
                            completion)
from replay.server import ReplayServer, load_recorded

__all__ = [
    "FAULT_KINDS", "Reply", "ReplayError", "ReplayFaults", "ReplayHandler", "ReplayLog",
    "ReplayServer", "completion", "load_recorded",
]
