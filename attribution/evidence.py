"""Per-prompt evidence, set against what independent models answered to the same prompt.

A suspect's answer that shares phrases with the provider's is evidence only if independent models
do not share them too: "The capital of France is Paris" is in every model's answer. So for every
suspect answer whose prompt the provider served, the paired Jaccard is shown beside each
reference model's Jaccard to the *same served answer*, and the excess over the largest of them is
what ranks the strongest pairs. Jaccard only: references rarely carry embeddings (``reference add
--embeddings``), so a cosine excess could not be computed for most of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from attribution.references import ReferenceData
from attribution.result import ResponseEvidence
from fingerprint.minhash import has_shingles
from index.store import FingerprintIndex


@dataclass(frozen=True)
class PromptEvidence:
    """One suspect answer: its paired comparison, and the references' on the same prompt."""

    suspect_id: str
    prompt: str | None
    served_id: str | None  # the provider's answer it is paired with (None: prompt not served)
    jaccard: float | None  # suspect vs that answer (None: not paired, or no shingles)
    cosine: float | None
    near_duplicate: bool
    provider_like: bool | None
    reference_jaccards: dict[str, float] = field(default_factory=dict)

    @property
    def reference_max(self) -> float | None:
        return max(self.reference_jaccards.values()) if self.reference_jaccards else None

    @property
    def excess(self) -> float | None:
        """Paired Jaccard above the largest reference's on the same served answer."""
        if self.jaccard is None or self.reference_max is None:
            return None
        return self.jaccard - self.reference_max


@dataclass(frozen=True)
class ReferenceAnswer:
    """What one reference model answered to a prompt, and its Jaccard to the served answer."""

    name: str
    text: str | None
    jaccard: float | None


def prompt_evidence(index: FingerprintIndex, evidence: Sequence[ResponseEvidence],
                    hashes: Sequence[str | None],
                    references: Sequence[ReferenceData]) -> tuple[PromptEvidence, ...]:
    """Row i describes suspect answer i (``hashes[i]``: its prompt's hash)."""
    served_rows = [e.paired.row if e.paired is not None else -1 for e in evidence]
    paired = [i for i, row in enumerate(served_rows) if row >= 0]
    per_reference = {ref.name: _reference_jaccards(index, ref, hashes, served_rows, paired)
                     for ref in references}
    return tuple(
        PromptEvidence(
            suspect_id=e.id, prompt=e.prompt,
            served_id=e.paired.id if e.paired is not None else None,
            jaccard=e.paired.jaccard if e.paired is not None else None,
            cosine=e.paired.cosine if e.paired is not None else None,
            near_duplicate=e.near_duplicate, provider_like=e.provider_like,
            reference_jaccards={name: values[i] for name, values in per_reference.items()
                                if i in values})
        for i, e in enumerate(evidence))


def _reference_jaccards(index: FingerprintIndex, ref: ReferenceData,
                        hashes: Sequence[str | None], served_rows: Sequence[int],
                        paired: Sequence[int]) -> dict[int, float]:
    """Suspect answer i -> the reference's Jaccard to the served answer i is paired with, where
    the reference answered that prompt and both answers have shingles."""
    first = ref.first_row_by_prompt()
    mine = [i for i in paired if hashes[i] in first]
    if not mine:
        return {}
    theirs = ref.signatures[[first[hashes[i]] for i in mine]]
    served = index.signatures([served_rows[i] for i in mine])
    values = np.mean(theirs == served, axis=1)
    usable = has_shingles(theirs) & has_shingles(served)
    return {i: float(v) for i, v, ok in zip(mine, values, usable) if ok}


def reference_answers(ref_list: Sequence[ReferenceData], prompt_hash: str | None,
                      jaccards: dict[str, float]) -> tuple[ReferenceAnswer, ...]:
    """Each reference's answer to one prompt (for the strongest pairs), with its Jaccard."""
    out = []
    for ref in ref_list:
        row = ref.first_row_by_prompt().get(prompt_hash) if prompt_hash else None
        if row is None:
            continue
        text = ref.texts([row]).get(row) if ref.texts is not None else None
        out.append(ReferenceAnswer(ref.name, text, jaccards.get(ref.name)))
    return tuple(out)


def strongest_first(prompts: Sequence[PromptEvidence],
                    evidence: Sequence[ResponseEvidence]) -> list[int]:
    """Suspect answers in the order a reader should see them: by excess Jaccard over the
    references where they answered the prompt, the others after them by evidence score."""
    with_excess = sorted((i for i, p in enumerate(prompts) if p.excess is not None),
                         key=lambda i: -prompts[i].excess)  # type: ignore[operator]
    rest = sorted((i for i, p in enumerate(prompts) if p.excess is None),
                  key=lambda i: -evidence[i].evidence)
    return with_excess + rest
