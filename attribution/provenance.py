"""Provenance: what a reader needs to reproduce an attribution, recorded in every result.

A dispute turns on whether the other side can get the same figures from the same inputs. So
each result says when it was made, by which toolkit and library versions, from which exact bytes
(sha256 of the suspect file and of each index's manifest, which itself checksums every segment),
against which references, and, where the suspect file is a probe run's output, which endpoint and
model answered with which parameters and when. The bootstrap's seed is in the result's settings.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Sequence

from attribution.references import ReferenceData
from fingerprint.provenance import file_sha256, probe_details

# The libraries whose versions can change a figure.
VERSIONED_LIBRARIES = ("numpy", "scipy", "scikit-learn", "faiss-cpu", "onnxruntime", "torch",
                       "sentence-transformers", "transformers", "xxhash")


def provenance(suspect_path: str | os.PathLike[str], index_paths: Sequence[str | os.PathLike[str]],
               references: Sequence[ReferenceData],
               match: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a reader needs to reproduce the result: when and with what it was made, the sha256
    of the suspect file and of each index's manifest, which references (chosen by which facts,
    ``match``) and how the suspect was probed."""
    from fingerprint import __version__

    return {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "toolkit_version": __version__,
        "python": platform.python_version(),
        "libraries": library_versions(),
        "suspect": {"path": str(suspect_path), "sha256": file_sha256(suspect_path)},
        "indexes": [{"path": str(p), "manifest_sha256": file_sha256(Path(p) / "manifest.json")}
                    for p in index_paths],
        "references": [r.name for r in references],
        "reference_facts": {r.name: dict(r.meta) for r in references if r.meta},
        "reference_match": dict(match or {}),
        "probe": probe_details(suspect_path),
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries results depend on (read from package metadata, so
    nothing heavy is imported)."""
    out: dict[str, str | None] = {}
    for name in VERSIONED_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
