"""Provider share, defined once: the signals table's ``provider_share`` and the teacher table's
shares both come from ``provider_shares``, so a report can never show two different figures
under one name.

The provider share of a suspect is the share of its responses that one style classifier, over
every provider given and the reference models, assigns to that provider. Its null draws are the
references only, each scored with its own class left out: the null hypothesis is "the suspect is
one more independent model, like the references", and another candidate teacher is not known to
be independent of the provider (a sibling model would put the alternative into the null). With
one provider this is the classifier "provider against the references"; with several, the other
providers are classes too, so a student of one provider's sibling is not counted for both.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from attribution.classes import (PER_MODEL_CLASSES, comparable_features, model_classes,
                                only_features, style_classes)
from attribution.partners import ProviderProfile
from attribution.references import ReferenceData
from attribution.style_model import RelativeAttributor, TargetAttribution
from index.store import SegmentGroup

# The derived fraction's bootstrap: fixed and recorded in every result, so that anyone holding the
# same inputs gets the same interval.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def provider_shares(providers: Mapping[str, SegmentGroup | ProviderProfile],
                    references: Sequence[ReferenceData],
                    suspect_hashes: Sequence[str | None], suspect_style: Any,
                    bootstrap: int = BOOTSTRAP_RESAMPLES,
                    per_model: bool = PER_MODEL_CLASSES) -> dict[str, TargetAttribution]:
    """Each provider's share of the suspect's responses, calibrated on the references.

    ``providers`` maps each provider's label to its served responses (or a partner's shared
    profile, attribution.partners); ``suspect_style`` holds
    the suspect's style fingerprints (a CSR matrix, one row per response) and
    ``suspect_hashes`` its prompts' hashes, row for row; ``bootstrap`` resamples for the derived
    fraction's interval (0: none); ``per_model`` fits one class per model a provider's index
    serves (attribution.classes.model_classes), the provider's share summing its models'."""
    if per_model:
        classes, members = model_classes(providers, references, suspect_hashes)
    else:
        classes, members = style_classes(providers, references, suspect_hashes), None
    suspect_style = only_features(suspect_style, comparable_features(providers))
    attributor = RelativeAttributor(classes, list(providers),
                                    null_classes=[r.name for r in references],
                                    seed=BOOTSTRAP_SEED, members=members)
    return attributor.attribute(suspect_style, bootstrap)
