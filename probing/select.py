"""Choosing probe prompts from the provider's served ones: diverse and diagnostic.

Probing costs money and time, and a suspect's API may be rate-limited, so the prompts asked
should be the ones that tell the most. Two criteria:

- diverse: the prompts are clustered (k-means on their embeddings, by the index's own
  Fingerprinter) into as many clusters as probes wanted, at most, and the probes are spread over
  the clusters, so that one topic cannot fill the set;
- diagnostic: where reference models' outputs are known, a prompt is worth more when the
  provider's answer to it is distinctive: its margin, under a style classifier of provider
  against references, over the best reference class. Margins are cross-fitted (two halves of the
  prompts; each half scored by a classifier fitted on the other), since a classifier scoring its
  own training answers would find every one of them distinctive.

Within each cluster prompts are ranked by margin (without references: by closeness to the
cluster centre, the most typical prompt first), and clusters contribute in turn, largest first.
Everything is deterministic given the seed. Each chosen prompt says which cluster it stands for
and why it was chosen.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from attribution import ReferenceData, StyleClassifier, choose_references
from fingerprint.atomic import atomic_write_bytes
from fingerprint.errors import ConfigError
from fingerprint.fingerprinter import Fingerprinter
from index.store import open_index
from probing.errors import ProbeError


@dataclass(frozen=True)
class SelectConfig:
    n: int = 200
    seed: int = 0
    clusters: int | None = None  # default: min(n, prompts)

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"n must be a positive integer, got {self.n!r}")
        if self.clusters is not None and self.clusters < 1:
            raise ConfigError(f"clusters must be a positive integer, got {self.clusters!r}")


def select_probes(index_path: str | os.PathLike[str], config: SelectConfig = SelectConfig(),
                  references: Sequence[ReferenceData] | None = None,
                  fingerprinter: Fingerprinter | None = None,
                  reference_files: Sequence[str | os.PathLike[str]] = ()) -> list[dict[str, Any]]:
    """The chosen prompts, each a dict with ``id``, ``prompt``, ``cluster`` and ``why``.

    References: ``reference_files`` if given, else ``references``, else those stored in the
    index."""
    with open_index(index_path) as index:
        fingerprinter = fingerprinter or Fingerprinter(index.config)
        refs = choose_references([index], fingerprinter, references, reference_files)
        by_hash = index.prompt_hashes()
        rows = sorted(r[0] for r in by_hash.values())
        stored = index.responses(rows)
        items = [(row, stored[row]) for row in rows
                 if stored.get(row) is not None and stored[row].prompt]
        if not items:
            raise ProbeError(f"{index_path} stores no prompt texts (built with --no-store-text?): "
                             f"nothing to choose probes from")
        style = index.style([row for row, _ in items])
    prompts = [s.prompt for _, s in items]
    ids = [s.id for _, s in items]
    hashes = [s.prompt_hash for _, s in items]
    vectors = fingerprinter.fingerprint(prompts).embeddings
    k = min(config.clusters or config.n, len(prompts))
    labels, distance = _cluster(vectors, k, config.seed)
    margins = _margins(style, hashes, refs, config.seed) if refs else None

    order_in: dict[int, list[int]] = {}
    for c in range(k):
        members = np.flatnonzero(labels == c)
        key = (-margins[members]) if margins is not None else distance[members]
        order_in[c] = [int(i) for i in members[np.lexsort((members, key))]]
    cluster_order = sorted(order_in, key=lambda c: (-len(order_in[c]), c))
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < min(config.n, len(prompts)):
        for c in cluster_order:
            if depth < len(order_in[c]) and len(chosen) < config.n:
                i = order_in[c][depth]
                chosen.append(_explain(ids[i], prompts[i], c, len(order_in[c]), depth,
                                       None if margins is None else float(margins[i]),
                                       float(distance[i]), len(refs)))
        depth += 1
    return chosen


def _cluster(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, random_state=seed, n_init=3).fit(vectors)
    distance = np.linalg.norm(vectors - km.cluster_centers_[km.labels_], axis=1)
    return km.labels_.astype(np.int64), distance


def _margins(provider_style, hashes: Sequence[str | None], refs: Sequence[ReferenceData],
             seed: int) -> np.ndarray:
    """Cross-fitted margin of each provider answer: its provider score minus the best
    reference's, from a classifier that did not see that prompt."""
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, 2, size=len(hashes))
    margins = np.zeros(len(hashes))
    ref_rows = [(ref, {h: r for h, r in ref.first_row_by_prompt().items()}) for ref in refs]
    fold_of = {h: int(f) for h, f in zip(hashes, fold) if h is not None}
    for f in (0, 1):
        train = np.flatnonzero(fold != f)
        test = np.flatnonzero(fold == f)
        if not train.size or not test.size:
            continue
        mats = [provider_style[train]]
        for ref, first in ref_rows:
            keep = [r for h, r in first.items() if fold_of.get(h, 1 - f) != f]
            mats.append(ref.style[keep] if keep else ref.style[:0])
        mats = [m for m in mats if m.shape[0]] if mats[0].shape[0] else []
        if len(mats) < 2:
            continue
        scores = StyleClassifier(seed=seed).fit(mats).decision_scores(provider_style[test])
        if scores.ndim == 1:  # two classes: positive means class 1 (a reference)
            margins[test] = -scores
        else:
            margins[test] = scores[:, 0] - scores[:, 1:].max(axis=1)
    return margins


def _explain(ident: str, prompt: str, cluster: int, size: int, rank: int, margin: float | None,
             distance: float, n_refs: int) -> dict[str, Any]:
    if margin is None:
        why = (f"cluster {cluster} ({size} prompts): its {_ordinal(rank + 1)} most typical "
               f"prompt (no reference outputs to rank by distinctiveness)")
    else:
        why = (f"cluster {cluster} ({size} prompts): the provider's answer is its "
               f"{_ordinal(rank + 1)} most distinctive against {n_refs} reference models "
               f"(style margin {margin:+.2f})")
    return {"id": ident, "prompt": prompt, "cluster": cluster, "cluster_size": size,
            "rank_in_cluster": rank + 1, "margin": margin,
            "distance_to_centre": round(distance, 4), "why": why}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def write_probes(chosen: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> None:
    """Atomically: a half-written probes file is never left behind."""
    data = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in chosen)
    atomic_write_bytes(out, data.encode("utf-8"))
