"""The one configuration that decides what a fingerprint is.

Two fingerprints are comparable only if every field here is equal, which is why an index records
the whole config in its manifest and refuses to mix configs. Runtime knobs that do not change the
fingerprints (batch sizes, threads, progress bars) deliberately live elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from fingerprint.errors import ConfigError
from fingerprint.normalize import NORMALIZER_VERSIONS
from fingerprint.style import STYLE_VERSIONS
from fingerprint.style_extras import parse_extras

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

EMBEDDING_BACKENDS = ("torch", "onnx-int8", "static")
# The best attribution quality per second of embedding (benchmarks/embedding_speed.py, README
# there): on AlpacaEval the static table separates students by paired cosine with mean ROC AUC
# 0.80 against the transformer's 0.86, at over 1,000x the speed of sentence-transformers' encode.
DEFAULT_EMBEDDING_BACKEND = "static"
MINHASH_SCHEMES = ("affine32",)
HASH_FUNCTIONS = ("xxh32", "sha1_32")


def _flag(flag: str, help: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Field metadata for the fields a user may set on the command line: the CLI builds its
    options from these, so the flags can never drift from the config."""
    return {"flag": flag, "help": help, "choices": choices}


def settable_fields() -> list[dataclasses.Field]:
    """The config fields with a command-line flag (``field.metadata``: flag, help, choices)."""
    return [f for f in dataclasses.fields(FingerprintConfig) if "flag" in f.metadata]


@dataclass(frozen=True)
class FingerprintConfig:
    """Everything that determines the MinHash and embedding fingerprints of a text.

    ``minhash_scheme`` and ``hash_function`` name datasketch's (``MinHash(scheme="affine32",
    hashfunc=...)``; ``xxh32`` is ``xxhash.xxh32_intdigest``, ``sha1_32`` datasketch's default
    ``sha1_hash32``): signatures are bit-identical to datasketch's for the same shingles and seed.
    ``style_*`` define the per-response style fingerprint (fingerprint.style); ``style_extras``
    names the feature sets added to version 1's words (fingerprint.style_extras), "" for none.
    """

    normalizer_version: int = 1
    shingle_size: int = field(default=3, metadata=_flag("--shingle-size", "Words per shingle"))
    num_perm: int = field(default=128, metadata=_flag("--num-perm", "MinHash permutations"))
    seed: int = field(default=1, metadata=_flag("--seed", "MinHash seed"))
    minhash_scheme: str = "affine32"
    hash_function: str = "xxh32"
    embedding_model: str = field(default=DEFAULT_EMBEDDING_MODEL, metadata=_flag(
        "--embedding-model", "sentence-transformers model name or path"))
    embedding_backend: str = field(default=DEFAULT_EMBEDDING_BACKEND, metadata=_flag(
        "--embedding-backend", "How the model is run: its fp32 transformer (torch), the "
        "transformer with int8 weights on onnxruntime (onnx-int8), or a token table distilled "
        "from it (static)", EMBEDDING_BACKENDS))
    embedding_max_tokens: int = field(default=256, metadata=_flag(
        "--max-tokens", "Tokens embedded per response"))
    style_version: int = 1
    style_features: int = 2**18
    style_extras: str = ""

    def __post_init__(self) -> None:
        _check_int(self, "normalizer_version", 1)
        if self.normalizer_version not in NORMALIZER_VERSIONS:
            raise ConfigError(f"normalizer_version must be one of {sorted(NORMALIZER_VERSIONS)}, "
                              f"got {self.normalizer_version}")
        _check_int(self, "shingle_size", 1, 32)
        _check_int(self, "num_perm", 8, 4096)
        if self.num_perm % 8:
            raise ConfigError(f"num_perm must be a multiple of 8 (its 1-bit codes are packed into "
                              f"bytes), got {self.num_perm}")
        _check_int(self, "seed", 0, 2**32 - 1)
        _check_choice(self, "minhash_scheme", MINHASH_SCHEMES)
        _check_choice(self, "hash_function", HASH_FUNCTIONS)
        if not isinstance(self.embedding_model, str) or not self.embedding_model.strip():
            raise ConfigError("embedding_model must be a non-empty model name or path")
        _check_choice(self, "embedding_backend", EMBEDDING_BACKENDS)
        _check_int(self, "embedding_max_tokens", 8, 8192)
        _check_int(self, "style_version", 1)
        if self.style_version not in STYLE_VERSIONS:
            raise ConfigError(f"style_version must be one of {sorted(STYLE_VERSIONS)}, "
                              f"got {self.style_version}")
        _check_int(self, "style_features", 2**10, 2**24)
        if self.style_features & (self.style_features - 1):
            raise ConfigError(f"style_features must be a power of two, got {self.style_features}")
        parse_extras(self.style_extras)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FingerprintConfig":
        """Strict inverse of ``to_dict``: an unknown or missing key is an error, not a default,
        except a field added later (ADDED_FIELDS), which a config written before it existed
        lacks and which then takes the value that reproduces that config's fingerprints."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        data = {**ADDED_FIELDS, **data}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        if missing:
            raise ConfigError(f"config field(s) missing: {', '.join(missing)}")
        return cls(**data)

    def differences(self, other: "FingerprintConfig") -> list[tuple[str, Any, Any]]:
        """(field, self's value, other's value) for every field that differs."""
        return [(f.name, getattr(self, f.name), getattr(other, f.name))
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]


# Fields added after indexes were first written, with the value every earlier index implies.
ADDED_FIELDS: dict[str, Any] = {"style_extras": ""}


def _check_int(cfg: FingerprintConfig, name: str, low: int, high: int | None = None) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


def _check_choice(cfg: FingerprintConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
