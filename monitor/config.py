"""The monitor's configuration: one frozen, validated dataclass, saved with every baseline.

A baseline fitted under one configuration cannot score accounts under another (its null
distributions belong to its checkpoints, features and seed): loading compares the two and names
every difference.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from fingerprint.config import EMBEDDING_BACKENDS
from monitor.errors import MonitorConfigError

SIGNAL_COUNT = 3  # statistics combined at a checkpoint (monitor.scoring.SIGNALS)


@dataclass(frozen=True)
class MonitorConfig:
    """How accounts are tested (see monitor.detector for what each setting does)."""

    alpha: float = 0.003  # share of benign accounts flagged over their whole life, at most
    first_checkpoint: int = 30  # requests at the first test; each next one doubles
    checkpoints: int = 9  # tests per account: 30, 60, ..., 7,680 requests
    rff_features: int = 128  # random Fourier features per bandwidth
    bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0)  # RBF bandwidths, times the median distance
    reuse_perm: int = 16  # MinHash permutations of a prompt, for template reuse
    reuse_history: int = 32  # earlier prompts of the account a new one is compared with
    reuse_jaccard: float = 0.5  # estimated Jaccard that makes a prompt a reuse of an earlier one
    null_accounts: int = 10000  # benign accounts simulated from the baseline per checkpoint
    seed: int = 0
    embedding_backend: str = "static"

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise MonitorConfigError(f"alpha must be in (0, 0.5), got {self.alpha!r}")
        for name, low, high in (("first_checkpoint", 2, 1_000_000), ("checkpoints", 1, 20),
                                ("rff_features", 8, 4096), ("reuse_perm", 8, 256),
                                ("reuse_history", 1, 1024), ("null_accounts", 100, 1_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise MonitorConfigError(f"{name} must be an integer from {low} to {high}, got "
                                  f"{value!r}")
        if self.reuse_perm % 8:
            raise MonitorConfigError(f"reuse_perm must be a multiple of 8, got {self.reuse_perm}")
        if not self.bandwidths or any(not b > 0 for b in self.bandwidths):
            raise MonitorConfigError(f"bandwidths must be positive numbers, got {self.bandwidths!r}")
        if not 0 < self.reuse_jaccard <= 1:
            raise MonitorConfigError(f"reuse_jaccard must be in (0, 1], got {self.reuse_jaccard!r}")
        if self.embedding_backend not in EMBEDDING_BACKENDS:
            raise MonitorConfigError(f"embedding_backend must be one of {EMBEDDING_BACKENDS}, got "
                              f"{self.embedding_backend!r}")
        needed = int(SIGNAL_COUNT * self.checkpoints / self.alpha) + 1
        if self.null_accounts < needed:
            raise MonitorConfigError(
                f"null_accounts ({self.null_accounts}) too few for alpha {self.alpha} over "
                f"{self.checkpoints} checkpoints and {SIGNAL_COUNT} signals: an empirical p-value "
                f"cannot go below 1/(null_accounts + 1), so a test could never flag; need at "
                f"least {needed}")

    @property
    def checkpoint_sizes(self) -> tuple[int, ...]:
        return tuple(self.first_checkpoint * 2 ** k for k in range(self.checkpoints))


    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bandwidths"] = list(self.bandwidths)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MonitorConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MonitorConfigError(f"unknown monitor settings: {unknown}")
        values = dict(data)
        if "bandwidths" in values:
            values["bandwidths"] = tuple(values["bandwidths"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "MonitorConfig":
        """A configuration from a JSON object of settings (the others keep their defaults);
        every error names the file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise MonitorConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MonitorConfigError(f"{path}: not a JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise MonitorConfigError(f"{path}: expected a JSON object of monitor settings, got "
                                     f"{type(data).__name__}")
        try:
            return cls.from_dict(data)
        except MonitorConfigError as exc:
            raise MonitorConfigError(f"{path}: {exc}") from None
        except (TypeError, ValueError) as exc:  # a value of the wrong type for its comparison
            raise MonitorConfigError(f"{path}: a setting has the wrong type ({exc})") from None

    def differences(self, other: "MonitorConfig") -> list[str]:
        return [f"{f.name}: expected {getattr(self, f.name)!r}, got {getattr(other, f.name)!r}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]
