"""Installing a reference pack into an index: each reference with its facts, each once.

Each reference is added as its own stage + commit (index.add_reference), with its facts and the
sha256 of its answers file (``source_sha256``) in the same manifest swap. So an install that is
interrupted leaves whole references only, and running it again adds the rest: a reference the
index already holds from the same file is skipped. A reference of that name from another file is
a clash, found for every reference before anything is added.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from fingerprint.fingerprinter import Fingerprinter
from index import add_reference, open_index
from reference_pack.errors import ReferencePackError
from reference_pack.pack import read_pack, verify_pack

SOURCE_KEY = "source_sha256"  # the fact that ties a stored reference to its pack file


@dataclass(frozen=True)
class Installed:
    """What an install did with one reference."""

    name: str
    status: str  # "added" or "already installed"
    responses: int
    meta: dict[str, str]


def install_pack(pack_path: str | os.PathLike[str], index_path: str | os.PathLike[str],
                 fingerprinter: Fingerprinter, names: Sequence[str] = ()) -> list[Installed]:
    """Add the pack's references (all, or ``names``) to the index with their facts.

    The pack is checked first (manifest, then every chosen file's size and sha256) and every
    clash with the index is refused before anything is written."""
    pack = read_pack(pack_path)
    unknown = sorted(set(names) - set(pack.entries))
    if unknown:
        raise ReferencePackError(f"{pack.root}: holds no reference {', '.join(unknown)} (it "
                                 f"holds: {', '.join(sorted(pack.entries)) or 'none'})")
    chosen = sorted(names or pack.entries)
    verify_pack(pack, chosen)
    with open_index(index_path, expected_config=fingerprinter.config) as index:
        stored = {name: index.manifest.reference_meta.get(name, {}) for name in index.references}
    clashes = [n for n in chosen if n in stored and
               stored[n].get(SOURCE_KEY) != pack.entries[n].sha256]
    if clashes:
        raise ReferencePackError(f"{index_path}: already holds reference(s) "
                                 f"{', '.join(clashes)} from other answers than the pack's; "
                                 f"nothing was installed (rename them in the pack)")
    out = []
    for name in chosen:
        entry = pack.entries[name]
        meta = {**entry.meta, SOURCE_KEY: entry.sha256}
        if name in stored:
            out.append(Installed(name, "already installed", entry.responses, meta))
            continue
        result = add_reference(index_path, name, [pack.path_of(entry)], fingerprinter,
                               meta=meta, new_reference=True)
        out.append(Installed(name, "added", result.added, meta))
    return out
