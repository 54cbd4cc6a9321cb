"""False-positive rate of the watermark detectors on real unmarked text (all 24 AlpacaEval models).

    python benchmarks/watermark_fpr.py --data ../shared/data/alpacaeval [--keys 10]

No output in the data was made with our keys, so every p-value is drawn under the null. For
``--keys`` fresh keys per model (default parameters: tokens context 1 (2 before 2026-11-29),
gamma 0.25 on all-MiniLM-L6-v2's tokenizer; lexical: the post-hoc mark's version 2, serial
commas, contractions and synonyms, context 1; lexical_v1: version 1, synonyms only, context 1,
gamma 0.5, the same secrets) this prints the share of responses with a per-response p-value
at or below each level (responses too short to test excluded, their count printed), and the
pooled per-model p-values' Kolmogorov-Smirnov distance from the uniform distribution.

``shift``, ``shift_w0`` and ``shift_w1``: the shift test (weighted, the default;
fingerprint.watermark.shift) of each model's answers against the next model's (in file-name
order) as the "unmarked reference", under keys of context width 2 (the name kept from when 2
was the default), 0 and 1. Two different models differ in many windows
for reasons of their own, which is the case the test must not mistake for a mark. These have no
per-response tests: only the pooled column applies; each model's windows are compared once
(wm.compare_windows) and tested under all its keys.

The JSON's ``pooled_min_at`` names the model and the throwaway secret of each scheme's smallest
pooled p-value, so an extreme case can be rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kstest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fingerprint import watermark as wm  # noqa: E402
from fingerprint.watermark.tokenizer import encode  # noqa: E402

LEVELS = (1e-4, 1e-3, 0.01, 0.05, 0.1)
SCHEMES = ("tokens", "lexical", "lexical_v1", "shift", "shift_w0", "shift_w1")


def with_width(key: wm.WatermarkKey, width: int) -> wm.WatermarkKey:
    return dataclasses.replace(key, tokens=dataclasses.replace(key.tokens, context_width=width))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpacaeval"))
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--schemes", default=",".join(SCHEMES),
                        help=f"comma-separated, of {', '.join(SCHEMES)}")
    args = parser.parse_args()
    schemes = [x for x in args.schemes.split(",") if x]
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown:
        parser.error(f"unknown schemes {unknown}; known: {', '.join(SCHEMES)}")
    start = time.perf_counter()
    outputs = {}
    for path in sorted((args.data / "outputs").glob("*.jsonl")):
        texts = [json.loads(line)["output"] for line in path.open(encoding="utf-8")]
        outputs[path.stem] = [t for t in texts if t.strip()]
    tokenizer = wm.load_tokenizer("all-MiniLM-L6-v2")
    ids = {m: encode(tokenizer, texts) for m, texts in outputs.items()}
    # one key per (model, repetition): under a shared key, models that share phrases share
    # pairs, and their pooled p-values would be dependent
    keys = {m: [wm.generate_key() for _ in range(args.keys)] for m in outputs}
    result = {"models": len(outputs), "responses": sum(len(t) for t in outputs.values()),
              "keys": args.keys}
    models = list(outputs)
    reference = {m: ids[models[(i + 1) % len(models)]] for i, m in enumerate(models)}
    for scheme in schemes:
        per, pooled, short, smallest = [], [], 0, None
        for model, texts in outputs.items():
            if scheme.startswith("shift"):  # the windows and their weights do not need the key
                width = {"shift": 2, "shift_w0": 0, "shift_w1": 1}[scheme]
                compared = wm.compare_windows(ids[model], reference[model], width)
            for key in keys[model]:
                if scheme.startswith("shift"):
                    pooled.append(compared.test(with_width(key, width)).p_value)
                else:
                    det = (wm.detect_token_ids(key, ids[model]) if scheme == "tokens"
                           else wm.detect_lexical(key, texts) if scheme == "lexical"
                           else wm.detect_lexical(dataclasses.replace(key, posthoc=None), texts))
                    per.extend(r.p_value for r in det.responses if not r.too_short)
                    short += sum(r.too_short for r in det.responses)
                    pooled.append(det.p_value)
                if smallest is None or pooled[-1] < smallest["p_value"]:
                    # throwaway keys: kept so that an extreme case can be rerun and looked at
                    smallest = {"p_value": pooled[-1], "model": model,
                                "secret": key.secret.hex()}
        per = np.array(per)
        result[scheme] = {
            "per_response_tests": len(per), "too_short": short,
            "rate_at_level": {str(a): float(np.mean(per <= a)) if len(per) else None
                              for a in LEVELS},
            "pooled_tests": len(pooled), "pooled_min_p": float(min(pooled)),
            "pooled_min_at": smallest,
            "pooled_rate_at_0.001": float(np.mean(np.array(pooled) <= 0.001)),
            "pooled_rate_at_0.05": float(np.mean(np.array(pooled) <= 0.05)),
            "pooled_rate_at_0.01": float(np.mean(np.array(pooled) <= 0.01)),
            "pooled_ks_pvalue": float(kstest(pooled, "uniform").pvalue)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))
    print(f"\n{result['responses']} unmarked responses of {result['models']} models, "
          f"{args.keys} keys", file=sys.stderr)
    print("scheme     tests    short  " + "  ".join(f"<= {a:<6g}" for a in LEVELS)
          + "  pooled: n  KS p   min p", file=sys.stderr)
    for scheme in schemes:
        r = result[scheme]
        rates = "  ".join(f"{'-' if v is None else f'{v:.5f}':<9}"
                          for v in r["rate_at_level"].values())
        print(f"{scheme:<10} {r['per_response_tests']:<8} {r['too_short']:<6} {rates}  "
              f"{r['pooled_tests']:<4} {r['pooled_ks_pvalue']:.3f}  {r['pooled_min_p']:.3g}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
