"""The post-hoc watermark on 200 GPT-4 answers: strength per key, after a synonym attack, and
its meaning cost (issue 19, goal 2).

    flock /tmp/bench.lock .venv/bin/python benchmarks/posthoc.py --data ../shared/data/alpacaeval
        [--keys 20] [--answers 200] [--cosine-keys 3] [--json]

For each of ``--keys`` fresh keys: mark GPT-4's first ``--answers`` non-empty answers (prompt
order) post-hoc, and test (pooled p-value, per channel counts)

- the marked answers;
- the marked answers after the synonym attack: 20% of all words (word = a run of letters)
  replaced, drawn at random among the words that have a synonym. The attacker knows the public
  toolkit: a word of the post-hoc lexicon becomes a random other member of its class; any other
  word a random one-word synonym from WordNet's most frequent sense in each part of speech
  (radioactivity.py's thesaurus); capitalisation kept. If fewer than 20% of words have a synonym,
  all that do are replaced (the share reached is printed);
- the marked answers "normalised": every contraction expanded and every serial comma of a
  recognised list removed, which an attacker who knows the channels can do without the key;
- the original (unmarked) answers, under the same key.

Version 1 of the mark (synonyms only, key format 1) is measured beside it, same keys' secrets.
Meaning cost: cosine of the toolkit's MiniLM embeddings (fingerprint.embed) of each marked answer
to its original, for ``--cosine-keys`` keys; the same for the attacked answers for comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fingerprint import watermark as wm  # noqa: E402
from fingerprint.watermark import choices as ch  # noqa: E402
from fingerprint.watermark.lexicon import Lexicon, wordnet_dir  # noqa: E402

WORD = re.compile(r"[A-Za-z]+")


def synonym_attack(texts: list[str], share: float, rng: np.random.Generator,
                   lexicon: Lexicon,
                   thesaurus: dict[str, list[str]]) -> tuple[list[str], float]:
    """(attacked texts, share of all words changed): see the module docstring."""
    spots = []  # (text index, start, end, options)
    total = 0
    for t, text in enumerate(texts):
        for m in WORD.finditer(text):
            total += 1
            lower = m.group().lower()
            members = lexicon.synonyms(lower)
            options = ([w for w in members if w != lower] if members is not None
                       else thesaurus.get(lower, []))
            if options:
                spots.append((t, m.start(), m.end(), options))
    n = min(len(spots), round(share * total))
    chosen = sorted(rng.choice(len(spots), size=n, replace=False).tolist(), reverse=True)
    out = list(texts)
    for i in chosen:  # right to left within each text, so offsets hold
        t, start, end, options = spots[i]
        old = out[t][start:end]
        new = options[rng.integers(len(options))]
        new = new.capitalize() if old[:1].isupper() else new
        out[t] = out[t][:start] + new + out[t][end:]
    return out, n / max(total, 1)


def normalise(texts: list[str], lexicon: Lexicon) -> list[str]:
    """Every contraction expanded, every recognised serial comma removed (no key needed)."""
    out = []
    for text in texts:
        edits = []
        for c in ch.find_choices(text, lexicon, ("serial_comma", "contractions")):
            target = "plain" if c.channel == "serial_comma" else c.options[0]
            if c.chosen != target:
                edits.append((c.start, c.end, ch.render(c, target, text)))
        for start, end, new in sorted(edits, reverse=True):
            text = text[:start] + new + text[end:]
        out.append(text)
    return out


def channel_counts(det: wm.Detection) -> dict:
    return {name: [s.green, s.scored] for name, s in det.channels}


def run(args: argparse.Namespace) -> dict:
    from radioactivity import wordnet_synonyms

    rows = [json.loads(line) for line in
            (args.data / "outputs" / "gpt4.jsonl").open(encoding="utf-8")]
    texts = [r["output"] for r in sorted(rows, key=lambda r: r["prompt_id"])
             if r["output"].strip()][:args.answers]
    lexicon = wm.load_lexicon()
    thesaurus = wordnet_synonyms(wordnet_dir())
    rng = np.random.default_rng(args.seed)
    keys, result = [], {"answers": len(texts), "keys": args.keys, "per_key": []}
    start = time.perf_counter()
    for _ in range(args.keys):
        key = wm.generate_key()
        keys.append(key)
        v1 = dataclasses.replace(key, posthoc=None)
        marked = [wm.mark_text(key, t, lexicon) for t in texts]
        marked_texts = [m.text for m in marked]
        attacked, changed = synonym_attack(marked_texts, args.attack, rng, lexicon, thesaurus)
        marked_v1 = [wm.mark_text(v1, t, lexicon).text for t in texts]
        attacked_v1, _ = synonym_attack(marked_v1, args.attack, rng, lexicon, thesaurus)
        dets = {"marked": wm.detect_lexical(key, marked_texts, lexicon),
                "attacked": wm.detect_lexical(key, attacked, lexicon),
                "normalised": wm.detect_lexical(key, normalise(marked_texts, lexicon), lexicon),
                "normalised_attacked": wm.detect_lexical(
                    key, normalise(attacked, lexicon), lexicon),
                "unmarked": wm.detect_lexical(key, texts, lexicon)}
        row = {name: {"p": d.p_value, "green": d.pooled.green, "scored": d.pooled.scored,
                      "channels": channel_counts(d)} for name, d in dets.items()}
        row["choices"] = sum(m.candidates for m in marked)
        row["changed"] = sum(m.substitutions for m in marked)
        row["attack_share"] = changed
        row["v1"] = {"marked": wm.detect_lexical(v1, marked_v1, lexicon).p_value,
                     "attacked": wm.detect_lexical(v1, attacked_v1, lexicon).p_value}
        row["_texts"] = (marked_texts, attacked)
        result["per_key"].append(row)
    result["mark_and_test_seconds"] = round(time.perf_counter() - start, 1)
    result["cosine"] = cosine_cost(texts, [r.pop("_texts") for r in result["per_key"]],
                                   args.cosine_keys)
    for r in result["per_key"]:
        r.pop("_texts", None)
    return result


def cosine_cost(texts: list[str], versions: list[tuple[list[str], list[str]]], n: int) -> dict:
    from fingerprint.embed import Embedder

    embedder = Embedder()
    base = embedder.embed(texts)
    marked, attacked = [], []
    for marked_texts, attacked_texts in versions[:n]:
        marked.append(np.sum(base * embedder.embed(marked_texts), axis=1))
        attacked.append(np.sum(base * embedder.embed(attacked_texts), axis=1))
    m, a = np.concatenate(marked), np.concatenate(attacked)
    return {"keys": min(n, len(versions)), "marked_mean": float(m.mean()),
            "marked_min": float(m.min()), "marked_share_below_0.95": float(np.mean(m < 0.95)),
            "attacked_mean": float(a.mean()), "attacked_min": float(a.min())}


def summary(result: dict) -> dict:
    out = {}
    for name in ("marked", "attacked", "normalised", "normalised_attacked", "unmarked"):
        ps = np.array([r[name]["p"] for r in result["per_key"]])
        out[name] = {"max_p": float(ps.max()), "median_p": float(np.median(ps)),
                     "min_p": float(ps.min()),
                     "green_share": float(np.mean([r[name]["green"] / r[name]["scored"]
                                                   for r in result["per_key"]])),
                     "scored_median": float(np.median([r[name]["scored"]
                                                       for r in result["per_key"]]))}
    for name in ("marked", "attacked"):
        ps = np.array([r["v1"][name] for r in result["per_key"]])
        out["v1_" + name] = {"max_p": float(ps.max()), "median_p": float(np.median(ps)),
                             "min_p": float(ps.min())}
    out["attack_share"] = float(np.mean([r["attack_share"] for r in result["per_key"]]))
    return out


def table(result: dict) -> str:
    s = result["summary"]
    lines = [f"{result['answers']} GPT-4 answers, {result['keys']} keys; pooled p-values",
             "text                         max p      median p   green share  choices scored",
             "-" * 80]
    names = [("marked", "marked (v2)"), ("attacked", f"marked, {s['attack_share']:.0%} synonyms"),
             ("normalised", "marked, normalised"),
             ("normalised_attacked", "marked, synonyms+normalised"),
             ("unmarked", "unmarked (min p in max)")]
    for name, label in names:
        r = s[name]
        worst = r["min_p"] if name == "unmarked" else r["max_p"]
        lines.append(f"{label:<28} {worst:<10.3g} {r['median_p']:<10.3g} "
                     f"{r['green_share']:<12.3f} {r['scored_median']:.0f}")
    for name in ("marked", "attacked"):
        r = s["v1_" + name]
        lines.append(f"{'v1 (synonyms only) ' + name:<28} {r['max_p']:<10.3g} "
                     f"{r['median_p']:<10.3g}")
    c = result["cosine"]
    lines.append(f"cosine to original (MiniLM, {c['keys']} keys): marked mean {c['marked_mean']:.4f} "
                 f"min {c['marked_min']:.4f}; attacked mean {c['attacked_mean']:.4f} "
                 f"min {c['attacked_min']:.4f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpacaeval"))
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--attack", type=float, default=0.2)
    parser.add_argument("--cosine-keys", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    result = run(args)
    result["summary"] = summary(result)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result if args.json else result["summary"] | {"cosine": result["cosine"]},
                     indent=2))
    if not args.json:
        print(table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
