"""Scoring probe answers as they arrive, for the sequential test (attribution.stats.sequential).

Everything that decides an answer's score is fixed before the first probe: the style classifier
over the provider (the index's answers to the probe prompts) and the references, and the null
rates q0 and q1 from the references scored with their own class left out. Each answer is then
scored alone (is it assigned to the provider?), so the scores of successive answers depend on
nothing the test has already seen, which the e-processes' guarantee needs.
"""

from __future__ import annotations

import os
import random
from typing import Any, Mapping, Sequence

from attribution import (PROVIDER, ReferenceData, RelativeAttributor, choose_references,
                         style_classes)
from attribution.stats import SequentialConfig, SequentialTest, thresholds
from fingerprint.fingerprinter import Fingerprinter
from fingerprint.io import Prompt
from fingerprint.normalize import prompt_hashes
from index.store import open_index
from probing.errors import ProbeError


class ProbeScorer:
    """The provider-vs-references style classifier, fitted for one set of probe prompts."""

    def __init__(self, index_path: str | os.PathLike[str], prompts: Sequence[Prompt],
                 references: Sequence[ReferenceData] | None = None,
                 fingerprinter: Fingerprinter | None = None,
                 reference_files: Sequence[str | os.PathLike[str]] = (),
                 match: Mapping[str, str] | None = None):
        with open_index(index_path) as index:
            self.fingerprinter = fingerprinter or Fingerprinter(index.config)
            version = index.config.normalizer_version
            hashes = prompt_hashes((p.text for p in prompts), version)
            refs = choose_references([index], self.fingerprinter, references, reference_files,
                                     match=match)
            if len(refs) < 2:
                raise ProbeError(f"--until-decided needs at least 2 reference models (stored in "
                                 f"{index_path} or given with --reference); have {len(refs)}")
            classes = style_classes({PROVIDER: index}, refs, hashes)
        self.attributor = RelativeAttributor(classes, [PROVIDER])
        self.provider_class = self.attributor.names.index(PROVIDER)
        self.reference_rates = dict(self.attributor.null[PROVIDER])
        self.reference_rows = min(m.shape[0] for n, m in classes.items() if n != PROVIDER)

    def provider_like(self, response: str) -> bool:
        style = self.fingerprinter.fingerprint([response], embed=False).style
        return bool(self.attributor.assignments(style)[0] == self.provider_class)


class SequentialDecider:
    """``on_answer`` for run_probes: scores each answer, stops when the test decides."""

    def __init__(self, scorer: ProbeScorer, config: SequentialConfig):
        self.scorer = scorer
        self.test = SequentialTest(thresholds(scorer.reference_rates, config,
                                              scorer.reference_rows), config)

    def __call__(self, line: dict[str, Any]) -> bool:
        decision = self.test.update(self.scorer.provider_like(line["response"]))
        return decision is not None or self.test.exhausted


def sequential_decider(index_path: str | os.PathLike[str], prompts: Sequence[Prompt],
                       config: SequentialConfig,
                       reference_files: Sequence[str | os.PathLike[str]] = (),
                       match: Mapping[str, str] | None = None) -> SequentialDecider:
    """The decider of ``probe run --until-decided``: the provider's index, its stored references
    (those with the facts ``match``, if given) unless ``reference_files`` are given, fitted for
    these prompts."""
    scorer = ProbeScorer(index_path, prompts, reference_files=reference_files, match=match)
    return SequentialDecider(scorer, config)


def shuffled(prompts: Sequence[Prompt], seed: int) -> list[Prompt]:
    """A seeded random order: the test treats answers as draws from the prompt distribution."""
    order = list(prompts)
    random.Random(seed).shuffle(order)
    return order
