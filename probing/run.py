"""One probe run from files to files: what ``fingerprint probe run`` does, as a library call."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from attribution.stats import SequentialConfig, SequentialTest
from fingerprint.io import read_prompts
from fingerprint.records import FieldMap
from probing.client import ProbeConfig, ProbeStats, run_probes
from probing.decide import sequential_decider, shuffled
from probing.output import RequestParams


@dataclass(frozen=True)
class UntilDecided:
    """Stop once the sequential test decides (README "The sequential test")."""

    index: str | os.PathLike[str]
    config: SequentialConfig = field(default_factory=SequentialConfig)
    reference_files: Sequence[str | os.PathLike[str]] = ()
    seed: int = 0  # of the random order the prompts are asked in
    match: Mapping[str, str] | None = None  # only references with these facts (a matched null)


@dataclass(frozen=True)
class ProbeOutcome:
    stats: ProbeStats
    test: SequentialTest | None  # with UntilDecided: the test, decided or not


def probe_file(prompts_path: str | os.PathLike[str], out: str | Path, params: RequestParams,
               config: ProbeConfig, api_key: str | None, *, fields: FieldMap = FieldMap(),
               until_decided: UntilDecided | None = None,
               progress: Callable[[ProbeStats], None] | None = None) -> ProbeOutcome:
    """Ask the suspect every prompt of ``prompts_path`` that ``out`` has no answer for.

    With ``until_decided`` the classifier and thresholds are fitted first (before any request),
    the prompts are asked in a seeded random order and the run stops at the decision."""
    prompts = read_prompts(prompts_path, fields)
    decider = None
    if until_decided is not None:
        decider = sequential_decider(until_decided.index, prompts, until_decided.config,
                                     until_decided.reference_files, until_decided.match)
        prompts = shuffled(prompts, until_decided.seed)
    stats = run_probes(prompts, out, params, config, api_key, progress=progress,
                       on_answer=decider)
    return ProbeOutcome(stats, None if decider is None else decider.test)
