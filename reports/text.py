"""An attribution as the terminal shows it, and the number formats every report shares."""

from __future__ import annotations

from attribution import ALPHA, SIGNALS_BY_NAME, AttributionResult


def methodology(result: AttributionResult) -> list[tuple[str, str, str]]:
    """(signal, how it is computed, how it is calibrated) for each signal of the result, from
    attribution.signals, where each is defined once."""
    specs = [(s.name, SIGNALS_BY_NAME.get(s.name)) for s in result.signals]
    return [(name, spec.computed, spec.calibration or "not calibrated")
            for name, spec in specs if spec is not None]


def methodology_sections(result: AttributionResult) -> list[tuple[str, str]]:
    """(title, text) of the method in plain words, shared by the Markdown and HTML reports: the
    null hypothesis, the references, how signals combine, how the verdict is decided, and what
    the p-value does not say."""
    refs = ", ".join(result.references) or "none"
    return [
        ("The null hypothesis",
         "The suspect is one more independent model, like the reference models: its outputs are "
         "no more like the provider's than theirs are. Each reference is scored exactly as the "
         "suspect is (for the style classifier, with its own class left out), which gives the "
         "spread of every signal among independent models; the suspect's value is placed in "
         "that spread."),
        ("The reference models and why they count as independent",
         f"References: {refs}. They were chosen by whoever ran the attribution as models not "
         "trained on the provider's outputs, as far as is known; the p-value is only as good as "
         "that choice. The toolkit refuses a reference that is a candidate teacher (named like a "
         "provider, or giving word-for-word the provider's answers on at least half of the "
         "prompts both answered), because a null that contains the alternative proves nothing. "
         "A suspect unlike all references (much smaller or older, another language) is not "
         "fairly described by this null either."),
        ("How the signals are combined",
         "Each calibrated signal gives a p-value (listed below with how it is found); they are "
         "combined with the Cauchy combination test, which stays valid when the signals are "
         "dependent, as these are (they are computed from the same answers). A watermark test, "
         "where a key was given, is exact and joins the combination."),
        ("How the verdict is decided",
         f"Derived: the combined p-value is below {ALPHA:g}. Otherwise a sequential test on the "
         "provider share (two betting e-processes, anytime-valid) says whether the suspect is "
         "shown not to be derived (its provider-like rate is below that of a model with a "
         "derived fraction of 0.2), undecided (at the rate seen, about N more answers would "
         "decide), or simply not shown to be derived (no number of answers would decide at "
         "that rate). Without a p-value there is no verdict, and the report says why."),
        ("What the p-value does not say",
         "A small p-value says the suspect is more provider-like than independent models "
         "usually are. It does not say which model taught the suspect (a student of a sibling "
         "of the provider looks provider-like too: rank several providers' indexes), it does "
         "not say how much of the suspect was trained on the provider's outputs (the derived "
         "fraction is a lower bound), and a large p-value does not show independence: it says "
         "only that this evidence does not separate the suspect from the references."),
    ]


def fmt_fixed(value: float | None) -> str:
    """Three decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}"


def fmt_number(value: float | None) -> str:
    """Three decimals, or scientific notation where that would hide a tiny value (p-values)."""
    if value is None:
        return "n/a"
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"


def summary_text(result: AttributionResult) -> str:
    c = result.counts
    lines = [
        f"verdict   {result.verdict.sentence}",
        f"suspect   {result.suspect}: {c['responses']} responses"
        f" ({c['skipped_empty']} empty skipped), {c['paired']} with an indexed prompt",
        f"index     {result.index}: {c['indexed_responses']} served responses",
    ]
    if result.teachers is not None:
        t = result.teachers
        lines.append(f"teacher   {t.teacher.provider} (margin {t.margin:.3f} in provider share, "
                     f"p={fmt_number(t.teacher.p_value)}); ranking: "
                     + ", ".join(f"{s.provider} {s.share:.3f}" for s in t.ranking))
    lines += partner_lines(result)
    if result.calibrated:
        ci = result.derived_fraction_ci
        interval = "" if ci is None else f", 95% CI {ci[0]:.3f}-{ci[1]:.3f}"
        lines += [
            f"refs      {len(result.references)}: {', '.join(result.references)}",
            f"p-value   {fmt_number(result.p_value)}  (null: the suspect is one more independent "
            f"model, like the references)",
            f"score     {fmt_fixed(result.score)}  (derived fraction, lower bound{interval})",
        ]
    else:
        lines.append(f"score     {fmt_fixed(result.score)}  (uncalibrated: mean per-response evidence; "
                     f"higher = more derived)")
        if result.p_value is not None:
            lines.append(f"p-value   {fmt_number(result.p_value)}  (the watermark test's: null: "
                         "the suspect's outputs do not depend on the key)")
    width = max(len(s.name) for s in result.signals)
    for s in result.signals:
        p = f"  p={fmt_number(s.p_value)}" if s.p_value is not None else ""
        lines.append(f"  {s.name:<{width}}  {fmt_fixed(s.value)}{p}  (n={s.n}) {s.description}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def partner_lines(result: AttributionResult) -> list[str]:
    """One line per partner bundle used: who, which bundle, how old, its provider share (where
    it shared a style profile) and its near-duplicates."""
    shares = {} if result.teachers is None else {s.provider: s for s in result.teachers.ranking}
    lines = []
    for p in result.partners:
        o, score = p.origin, shares.get(p.name)
        share = "no style profile" if score is None else (
            f"provider share {score.share:.3f} (rank "
            f"{list(shares).index(p.name) + 1} of {len(shares)})")
        near = (f"{p.near_duplicates} of {p.compared} responses near-duplicate its "
                f"{p.signatures} shared signatures (best Jaccard {fmt_fixed(p.best)})"
                if p.signatures else "no shared signatures")
        lines.append(f"partner   {p.name}: bundle {o.get('bundle_id')} of {o.get('org')}, "
                     f"{o.get('age_days')} days old; {share}; {near}")
    return lines
