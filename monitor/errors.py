"""Errors of the extraction monitor (all derive from FingerprintError).

One class per kind of failure, so that a caller (the CLI, the online server) can tell a setting
it must fix from a state directory it must not touch and from a disk that is full. The monitor's
modules each add their own kind here rather than raising a generic one.
"""

from __future__ import annotations

from fingerprint.errors import ConfigError, FingerprintError


class MonitorError(FingerprintError):
    """Base class of every error the monitor raises on purpose."""


class MonitorConfigError(MonitorError, ConfigError):
    """A monitor setting is invalid (a limiter rate or burst, a policy threshold); the message
    names the field and the values it accepts. Also a ConfigError, so code that catches the
    toolkit's configuration errors catches these too."""


class LimiterError(MonitorError):
    """The limiter was handed a value it cannot decide on: a risk outside [0, 1], a time that is
    not a finite number of seconds, a cost the burst can never admit."""


class StateError(MonitorError):
    """The state directory cannot be used: not a monitor state directory, a file missing or
    replaced by a link, the store closed or broken by an earlier failed write."""


class StateCorruptedError(StateError):
    """A state file fails its checks (magic, checksum, length); the message names the file and
    the byte offset, because a crash cannot explain damage there and so nothing is guessed."""


class StateVersionError(StateError):
    """The state was written for another monitor configuration or in another format version; the
    message names the expected and the actual value, because reusing it would mix counters that
    mean different things."""


class StateLockedError(StateError):
    """Another process holds the state directory (two writers would interleave the journal)."""


class StateWriteError(StateError):
    """Writing state failed (a full disk, a file size limit); what was flushed before is intact
    and the entries that were being written stay pending, so a later flush can retry."""


class StateEntryError(StateError):
    """An account name or blob the store cannot keep: wrong type, empty, or over the size
    limit."""


class BaselineError(MonitorError):
    """The benign baseline cannot be built or read."""


class ScanError(MonitorError):
    """A scan cannot run as asked (a reorder window or batch size it cannot use) or cannot write
    where it was told to (a missing directory, a directory where a file should go)."""


class MonitorReportError(MonitorError):
    """The scan's HTML report cannot be written as asked: not an .html name, a directory that
    does not exist, or a log read from standard input (which the report would read again)."""


class ExportError(MonitorError):
    """``export-flagged`` was asked for something it cannot do (a risk threshold outside
    [0, 1]); a bad risk file is an InputError naming file, line and field instead."""


class CheckError(MonitorError):
    """A request handed to the online monitor cannot be judged: an account that is not a
    non-empty string, a prompt that is not text, a timestamp that is not a finite number of
    seconds. The online server answers it with a 400 naming the field."""


class ServeError(MonitorError):
    """The online server cannot start as asked (the port is in use, the address cannot be
    bound) or was given a limit that would refuse every request."""
