"""Text to fingerprints: normalising, shingles, MinHash and embeddings. Knows no storage.

Importing this package never imports torch; the embedding model loads on first use.
"""

from fingerprint.config import DEFAULT_EMBEDDING_MODEL, FingerprintConfig
from fingerprint.embed import Embedder
from fingerprint.errors import ConfigError, FingerprintError, InputError
from fingerprint.fingerprinter import Fingerprinter, Fingerprints
from fingerprint.minhash import MIN_SHINGLES, MinHasher, estimated_jaccard, has_shingles
from fingerprint.io import Prompt, ReadStats, open_input, read_prompts, read_records
from fingerprint.normalize import normalize, prompt_hash, prompt_hashes
from fingerprint.records import FieldMap, ResponseRecord
from fingerprint.shingles import word_shingles

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EMBEDDING_MODEL", "MIN_SHINGLES", "ConfigError", "Embedder", "FieldMap", "FingerprintConfig",
    "FingerprintError", "Fingerprinter", "Fingerprints", "InputError", "MinHasher", "Prompt",
    "ReadStats", "ResponseRecord", "__version__", "estimated_jaccard", "has_shingles", "normalize", "open_input",
    "prompt_hash", "prompt_hashes", "read_prompts", "read_records", "word_shingles",
]
