"""The classes a style classifier is trained on: the provider(s) and the reference models.

Every class should answer the same prompts, so that topic cancels out and only style tells them
apart: each class is trained on its answers to the suspect's prompts where it has enough of them,
else on an even sample of all its answers. The number of rows per class is bounded, which bounds
the cost of fitting.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from attribution.errors import ReferenceNameError
from attribution.references import ReferenceData, check_unique_names
from index.store import SegmentGroup

PROVIDER = "(provider)"
# Rows per class used to fit the style classifier: enough for the idiosyncrasies, bounded cost.
MAX_CLASS_ROWS = 2000
MIN_CLASS_ROWS = 50


def spread_rows(rows: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` rows, evenly spread: deterministic, no seed to record."""
    rows = list(rows)
    if len(rows) <= limit:
        return rows
    return [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit)]


def provider_training_rows(group: SegmentGroup,
                           suspect_hashes: Sequence[str | None]) -> list[int]:
    """Served rows to fit on: the answers to the suspect's prompts (the first answer of each),
    else an even sample of all rows."""
    by_prompt = group.rows_for_prompts(h for h in suspect_hashes if h is not None)
    paired = sorted(rows[0] for rows in by_prompt.values())
    if len(paired) >= MIN_CLASS_ROWS:
        return spread_rows(paired, MAX_CLASS_ROWS)
    return spread_rows(range(len(group)), MAX_CLASS_ROWS)


def reference_training_rows(ref: ReferenceData,
                            suspect_hashes: Sequence[str | None]) -> list[int]:
    """A reference's rows to fit on, chosen as for the provider."""
    wanted = {h for h in suspect_hashes if h is not None}
    first = ref.first_row_by_prompt()
    shared = sorted(row for h, row in first.items() if h in wanted)
    if len(shared) >= MIN_CLASS_ROWS:
        return spread_rows(shared, MAX_CLASS_ROWS)
    return spread_rows(range(len(ref)), MAX_CLASS_ROWS)


def style_classes(providers: Mapping[str, SegmentGroup], references: Sequence[ReferenceData],
                  suspect_hashes: Sequence[str | None]) -> dict[str, Any]:
    """Class name -> style matrix: each provider's (by its label), then each reference's."""
    check_unique_names(references)
    clash = sorted(set(providers) & {r.name for r in references})
    if clash:
        raise ReferenceNameError(f"reference names equal provider labels: {clash}; rename the "
                                 f"reference (or the provider's index directory)")
    classes = {label: group.style(provider_training_rows(group, suspect_hashes))
               for label, group in providers.items()}
    for ref in references:
        classes[ref.name] = ref.style[reference_training_rows(ref, suspect_hashes)]
    return classes
