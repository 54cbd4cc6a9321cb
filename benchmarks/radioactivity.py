"""Watermark radioactivity: do students trained on a marked teacher's answers carry the mark?

    .venv/bin/python benchmarks/radioactivity.py --data ../shared/data/alpacaeval
        [--out bench-out/radioactivity] [--quick] [--delta 2.0] [--gamma 0.25] [--json]
        [--context-width 1] [--fractions 0,0.05,0.1] [--eval-samples 8]
        [--finetune-epochs 2] [--finetune-lr 5e-4]

A real, small distillation experiment on the CPU (Sander et al. 2024, "Watermarking makes
language models radioactive", closed-model setting: only the suspect's outputs are seen). No
pretrained language model can be loaded here, so every model is trained from the AlpacaEval text
(benchmarks/tinylm.py has the models):

1. Split (seeded): 200 held-out prompts that no model ever trains on, the rest for training;
   the 24 models' answers into two halves of 12 models each.
2. Tokenizer: byte-level BPE trained on the training prompts and their answers. The watermark
   key is made for it (library defaults: context 1, gamma 0.25, delta 2; context 2 before
   2026-11-29). The key's secret is
   derived from ``--seed`` so that reruns are comparable (``generate_key`` draws a random one).
3. Teacher (the provider's model): a decoder-only transformer trained on the first half's
   answers to the training prompts. It answers every training prompt several times without the
   mark and, independently, as often with it (delta added to the green tokens' logits before
   temperature and top-k, where a transformers LogitsProcessor acts).
4. Students, trained on the teacher's answers, a share f of them marked (f = 0, 5%, 10%, 50%,
   100%; same prompts and number of answers for every f; the marked sets are nested):
   - n-gram: an interpolated Kneser-Ney trigram model of the answers (its order covers the
     mark's window at widths 0-2, the most favourable case for radioactivity);
   - neural: a smaller transformer first pre-trained on the other half's answers (text the
     teacher never produced), then fine-tuned on the teacher's answers: distillation.
5. Each student, and the teacher itself without and with the mark (the provider's served text,
   for reference), answers the held-out prompts (twice each); the detector tests the decoded
   text (what a provider sees), re-tokenised with the key's tokenizer: pooled p-value over
   (context, token) pairs deduplicated across all outputs, and per-response p-values; the test
   on the raw sampled ids is reported too. Control: the same outputs under ten keys that marked
   nothing (p-values there are null draws).
6. Quality cost: perplexity of the teacher's marked and unmarked answers under two reference
   models: the student base (independent: never saw the teacher's text) and the teacher itself
   without the mark (its own unbiased distribution, temperature 1); and a semantic check:
   MiniLM cosine of each answer to its prompt, marked against unmarked, beside the floor of a
   shuffled prompt (the tiny teacher writes loosely on-topic word salad, so relevance to the
   prompt is the meaning there is to keep).
7. Attacks on the outputs of the 100%- and 10%-marked students (and on the teacher's marked
   answers): random word substitution and deletion (10%, 30% of words), and WordNet synonym
   substitution. No paraphrasing or translation model is available on this machine (nothing can
   be downloaded and none is trainable in minutes), so synonym substitution stands in for
   paraphrase: it changes words, not sentence structure.

Every expensive artefact (tokenizer, teacher, student base, teacher answers, student outputs) is
cached under ``--out/cache``, keyed by the data's digest and every setting it depends on; reruns
reuse them (a rerun with everything cached takes about 3 minutes: perplexities, detection and
attacks are always recomputed). Prints one JSON object (also written to
``--out/radioactivity.json``), then tables. The full run took 24 minutes on two otherwise idle
cores from an empty cache (2026-11-24); ``--quick`` (``--out/quick``) takes 1-2 minutes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinylm as tl  # noqa: E402
from fingerprint import watermark as wm  # noqa: E402
from fingerprint.watermark.tokenizer import encode  # noqa: E402

CACHE_VERSION = 1
FRACTIONS = (0.0, 0.05, 0.10, 0.50, 1.00)
ATTACKED_FRACTIONS = (1.00, 0.10)
ATTACKS = (("substitute", 0.1), ("substitute", 0.3), ("delete", 0.1), ("delete", 0.3),
           ("synonym", 1.0))
WRONG_KEYS = 10
SHIFT_CONTROL_KEYS = 40  # the shift test is cheap once texts are token ids: more control keys
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the experiment (``--quick`` shrinks it for a smoke test)."""

    vocab_size: int
    context: int  # every transformer's window: prompt head + answer
    heldout_prompts: int
    train_prompts: int  # 0: all prompts not held out
    teacher: dict
    teacher_train: tl.TrainConfig
    base: dict
    base_train: tl.TrainConfig
    finetune: tl.TrainConfig
    samples_per_prompt: int  # teacher answers per training prompt, in each of the two sets
    eval_samples: int  # student answers per held-out prompt
    max_new_tokens: int
    temperature: float
    top_k: int
    ngram_order: int
    batch_size: int  # generation

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FULL = Settings(
    vocab_size=4096, context=256, heldout_prompts=200, train_prompts=0,
    teacher=dict(d_model=256, n_layers=4, n_heads=4),
    teacher_train=tl.TrainConfig(epochs=1.0, batch_size=16, lr=1e-3, warmup=50),
    base=dict(d_model=192, n_layers=3, n_heads=4),
    base_train=tl.TrainConfig(epochs=1.0, batch_size=16, lr=1e-3, warmup=50, seed=1),
    finetune=tl.TrainConfig(epochs=2.0, batch_size=16, lr=5e-4, warmup=20, seed=2),
    samples_per_prompt=4, eval_samples=2, max_new_tokens=160, temperature=0.8, top_k=50,
    ngram_order=3, batch_size=128)

QUICK = Settings(
    vocab_size=1024, context=128, heldout_prompts=20, train_prompts=60,
    teacher=dict(d_model=64, n_layers=2, n_heads=2),
    teacher_train=tl.TrainConfig(epochs=1.0, batch_size=16, lr=2e-3, warmup=10),
    base=dict(d_model=64, n_layers=2, n_heads=2),
    base_train=tl.TrainConfig(epochs=1.0, batch_size=16, lr=2e-3, warmup=10, seed=1),
    finetune=tl.TrainConfig(epochs=1.0, batch_size=16, lr=1e-3, warmup=5, seed=2),
    samples_per_prompt=2, eval_samples=2, max_new_tokens=48, temperature=0.8, top_k=50,
    ngram_order=3, batch_size=64)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- data and caching --------------------------------------------------------------------------

@dataclass
class Corpus:
    prompts: list[str]  # by prompt_id
    answers: dict[str, list[str]]  # model -> answer per prompt_id
    digest: str


def load_corpus(data: Path) -> Corpus:
    files = [data / "prompts.jsonl"] + sorted((data / "outputs").glob("*.jsonl"))
    if not files[0].is_file() or len(files) < 3:
        raise SystemExit(f"{data}: expected prompts.jsonl and outputs/<model>.jsonl "
                         "(the AlpacaEval folder, ../shared/data/alpacaeval)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    prompts = [json.loads(line)["instruction"] for line in open(files[0], encoding="utf-8")]
    answers = {}
    for path in files[1:]:
        rows = [json.loads(line) for line in open(path, encoding="utf-8")]
        by_id = {r["prompt_id"]: r["output"] for r in rows}
        answers[path.stem] = [by_id.get(i, "") for i in range(len(prompts))]
    return Corpus(prompts, answers, digest.hexdigest())


class Cache:
    """Artefacts under ``root``, named by a digest of what they depend on."""

    def __init__(self, root: Path, data_digest: str):
        self.root = root
        self.data_digest = data_digest
        root.mkdir(parents=True, exist_ok=True)

    def key(self, name: str, params: Any) -> str:
        blob = json.dumps([CACHE_VERSION, name, params, self.data_digest], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, name: str, key: str, suffix: str) -> Path:
        return self.root / f"{name}-{key}{suffix}"

    def json(self, name: str, key: str, build: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, True if it was built now)."""
        path = self.path(name, key, ".json")
        if path.is_file():
            return json.loads(path.read_text()), False
        value = build()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
        return value, True


# --- models ------------------------------------------------------------------------------------

def trained_lm(cache: Cache, name: str, key: str, cfg: tl.LMConfig, train_cfg: tl.TrainConfig,
               examples: list[list[int]], loss_from: list[int],
               pad: int) -> tuple[tl.TinyLM, dict]:
    """A transformer trained from scratch on ``examples``, or its cached copy."""
    path = cache.path(name, key, ".pt")
    torch.manual_seed(train_cfg.seed)
    model = tl.TinyLM(cfg)
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["state"])
        model.eval()
        return model, {**json.loads(saved["facts"]), "cached": True}
    log(f"training {name}: {model.num_parameters():,} parameters, {len(examples)} examples")
    facts = tl.train(model, examples, loss_from, pad, train_cfg, log)
    tmp = path.with_suffix(".tmp")
    torch.save({"state": model.state_dict(), "facts": json.dumps(facts)}, tmp)
    os.replace(tmp, path)
    return model, {**facts, "cached": False}


def describe(model: tl.TinyLM, facts: dict, train_cfg: tl.TrainConfig, data: str) -> dict:
    return {"architecture": "decoder-only transformer (pre-LayerNorm, GELU MLP x4, learned "
                            "positions, tied embeddings)",
            **model.cfg.to_dict(), "parameters": model.num_parameters(),
            "training": {**train_cfg.to_dict(), **facts}, "data": data}


@contextmanager
def single_thread():
    """Generation runs on one torch thread: its per-step products are so small that a second
    thread only adds synchronisation, and on a machine shared with other work two threads made
    sampling 8x slower than one (1,700 vs 200 tokens/s, measured). Training keeps two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def watermark_key(tokenizer_path: Path, seed: int, config: wm.WatermarkConfig,
                  label: str) -> wm.WatermarkKey:
    """A key for the benchmark's tokenizer whose secret is derived from the seed (so reruns use
    the same key); ``label`` tells the marking key from the control keys."""
    key = wm.generate_key(str(tokenizer_path), config=config)
    return dataclasses.replace(key, secret=key_secret(seed, label))


def key_secret(seed: int, label: str) -> bytes:
    return hashlib.sha256(f"radioactivity/{label}/{seed}".encode()).digest()


def control_secret(seed: int, i: int) -> bytes:
    """The secret of control key ``i`` (``watermark_key``'s label ``control-i``)."""
    return key_secret(seed, f"control-{i}")


def watermark_hook(key: wm.WatermarkKey, vocab_size: int) -> tl.LogitsHook:
    """Adds delta to the green tokens after the last ``context_width`` ids (prompt included)."""
    delta = key.tokens.delta

    def hook(history: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        mask = wm.green_masks(key, history, vocab_size)  # its last ``width`` ids (0: none)
        return logits + delta * torch.from_numpy(mask).to(logits.dtype)

    return hook


# --- detection, quality, attacks ---------------------------------------------------------------

def detection_row(key: wm.WatermarkKey, tokenizer, answers: list[list[int]],
                  wrong_keys: Sequence[wm.WatermarkKey], reference: list[list[int]],
                  shift_keys: Sequence[wm.WatermarkKey]) -> dict:
    """The detector on decoded answers (pooled and per response), on the raw token ids, and
    under control keys; the shift test (wm.compare_windows, both statistics) of the decoded and
    re-tokenised answers against ``reference``, the teacher's unmarked answers to the training
    prompts (token ids), under the key and under ``shift_keys``, which marked nothing."""
    texts = tokenizer.decode_batch(answers)
    det = wm.detect_texts(key, texts, tokenizer)
    suspect = encode(tokenizer, texts)  # what a provider sees: text, tokenised again
    compared = wm.compare_windows(suspect, reference, key.tokens.context_width)
    shift = compared.test(key)
    controls = [compared.test(k) for k in shift_keys]
    ids = wm.detect_token_ids(key, answers)
    per = np.array([r.p_value for r in det.responses if not r.too_short])
    wrong = [wm.detect_texts(k, texts, tokenizer).p_value for k in wrong_keys]
    return {"responses": len(texts),
            "mean_tokens": float(np.mean([len(a) for a in answers])) if answers else 0.0,
            "pooled": det.pooled.to_dict(), "pooled_token_ids": ids.pooled.to_dict(),
            "per_response": {"tested": int(per.size),
                             "median_p": float(np.median(per)) if per.size else None,
                             "share_p_below_0.01": float(np.mean(per < 0.01)) if per.size
                             else None},
            "wrong_key_p_values": wrong,
            "shift": shift.to_dict(),
            "shift_wrong_key_p_values": [t.weighted_p for t in controls],
            "shift_wrong_key_sign_p_values": [t.sign_p for t in controls]}


def semantic_check(prompts: list[str], unmarked: list[str], marked: list[str],
                   seed: int) -> dict:
    """Does the mark pull answers off their prompt? Cosine between each prompt and the
    teacher's answer to it (all-MiniLM-L6-v2, the toolkit's embedder), unmarked and marked
    (the same prompts, paired), beside a floor: unmarked answers against a shuffled prompt.
    ``cost_share``: the drop in relevance as a share of the unmarked answers' relevance above
    that floor (0: no cost; 1: as off-topic as a random prompt's answer)."""
    from fingerprint.embed import Embedder

    embedder = Embedder()
    p, u, m = (embedder.embed(t) for t in (prompts, unmarked, marked))
    on_topic, with_mark = np.sum(p * u, axis=1), np.sum(p * m, axis=1)
    floor = np.sum(p[np.random.default_rng(seed).permutation(len(p))] * u, axis=1)
    drop = on_topic - with_mark
    above = float(on_topic.mean() - floor.mean())
    return {"pairs": len(prompts), "relevance_unmarked": float(on_topic.mean()),
            "relevance_marked": float(with_mark.mean()),
            "relevance_shuffled_prompt": float(floor.mean()),
            "drop": float(drop.mean()),
            "drop_standard_error": float(drop.std(ddof=1) / np.sqrt(len(drop))),
            "cost_share": float(drop.mean() / above) if above > 0 else None}


def perplexity(model: tl.TinyLM, heads: list[list[int]], answers: list[list[int]],
               pad: int) -> dict:
    """Token-weighted perplexity of the answers given their prompt heads, and the median of the
    per-answer perplexities."""
    examples = [h + a for h, a in zip(heads, answers)]
    starts = [len(h) for h in heads]
    nll, count = tl.answer_nll(model, examples, starts, pad)
    keep = count > 0
    return {"perplexity": float(np.exp(nll[keep].sum() / count[keep].sum())),
            "median_answer_perplexity": float(np.median(np.exp(nll[keep] / count[keep]))),
            "tokens": int(count.sum())}


def wordnet_synonyms(directory: Path) -> dict[str, list[str]]:
    """word -> the other one-word lemmas of its most frequent sense in each part of speech (what
    a thesaurus-based rewriter offers; unlike the library's lexicon, not restricted to
    unambiguous words: an attacker wants coverage more than guaranteed meaning). Stop words and
    words under three letters are left out: WordNet's "a" (ampere), "in" (inch) or "be"
    (beryllium) would only wreck the text."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    offsets: dict[str, list[tuple[str, int]]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(directory / f"index.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                fields = line.split()
                word = fields[0]
                if WORD.fullmatch(word) and len(word) >= 3 and word not in ENGLISH_STOP_WORDS:
                    first_sense = fields[len(fields) - int(fields[2])]  # offsets, most used first
                    offsets.setdefault(word, []).append((pos, int(first_sense)))
    synsets: dict[tuple[str, int], list[str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(directory / f"data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                fields = line.split()
                count = int(fields[3], 16)
                words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).lower() for i in range(count)]
                synsets[(pos, int(fields[0]))] = [w for w in words if WORD.fullmatch(w)]
    table = {}
    for word, senses in offsets.items():
        options = sorted({w for s in senses for w in synsets.get(s, []) if w != word})
        if options:
            table[word] = options
    return table


def attack(texts: list[str], kind: str, rate: float, rng: np.random.Generator,
           vocabulary: tuple[np.ndarray, np.ndarray], synonyms: dict[str, list[str]]
           ) -> tuple[list[str], float]:
    """Attacked texts and the share of words changed. ``substitute``: each word replaced with
    probability ``rate`` by a random word (drawn by frequency from the attacker's own text);
    ``delete``: each word dropped with probability ``rate``; ``synonym``: each word that has a
    WordNet synonym replaced by a random one with probability ``rate``."""
    words, weights = vocabulary
    out, changed, total = [], 0, 0

    def match_case(new: str, old: str) -> str:
        return new.capitalize() if old[:1].isupper() else new

    for text in texts:
        pieces, last = [], 0
        for m in WORD.finditer(text):
            total += 1
            word, replacement = m.group(0), None
            if kind == "substitute" and rng.random() < rate:
                replacement = match_case(str(words[rng.choice(len(words), p=weights)]), word)
            elif kind == "delete" and rng.random() < rate:
                replacement = ""
            elif kind == "synonym" and word.lower() in synonyms and rng.random() < rate:
                options = synonyms[word.lower()]
                replacement = match_case(options[rng.integers(len(options))], word)
            if replacement is None:
                continue
            changed += 1
            end = m.end()
            if replacement == "" and end < len(text) and text[end] == " ":
                end += 1  # drop the word with the space after it
            pieces.append(text[last:m.start()] + replacement)
            last = end
        out.append("".join(pieces) + text[last:])
    return out, changed / max(total, 1)


def word_vocabulary(texts: Sequence[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` most frequent lowercase words and their probabilities."""
    from collections import Counter

    counts = Counter(w.lower() for t in texts for w in WORD.findall(t))
    top = counts.most_common(size)
    weights = np.array([c for _, c in top], dtype=float)
    return np.array([w for w, _ in top]), weights / weights.sum()


# --- the experiment ----------------------------------------------------------------------------

def run(data: Path, out: Path, settings: Settings, wm_config: wm.WatermarkConfig, seed: int,
        threads: int, quick: bool, fractions: Sequence[float] = FRACTIONS,
        shift_control_keys: int = SHIFT_CONTROL_KEYS, reference_kind: str = "train") -> dict:
    """The experiment (the module docstring). ``reference_kind`` is the shift test's unmarked
    reference: "train", the teacher's unmarked answers to the training prompts; "probes", its
    unmarked answers to the held-out prompts the suspects are probed with."""
    started = time.time()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.time() - since, 1)
        return time.time()

    torch.set_num_threads(threads)
    corpus = load_corpus(data)
    cache = Cache(out / "cache", corpus.digest)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(corpus.prompts))
    heldout = sorted(order[:settings.heldout_prompts].tolist())
    rest = order[settings.heldout_prompts:]
    train_ids = sorted((rest[:settings.train_prompts] if settings.train_prompts else rest).tolist())
    models = sorted(corpus.answers)
    model_order = rng.permutation(len(models))
    teacher_models = sorted(models[i] for i in model_order[:len(models) // 2])
    base_models = sorted(models[i] for i in model_order[len(models) // 2:])
    split = {"seed": seed, "heldout": heldout, "train": train_ids,
             "teacher_models": teacher_models, "base_models": base_models}
    t = time.time()

    # tokenizer and key
    tok_key = cache.key("tokenizer", [settings.vocab_size, split])
    tok_path = cache.path("tokenizer", tok_key, ".json")
    if not tok_path.is_file():
        texts = [corpus.prompts[i] for i in train_ids] + [
            corpus.answers[m][i] for m in models for i in train_ids]
        tl.train_tokenizer(texts, settings.vocab_size).save(str(tok_path))
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tok_path))
    (out / "tokenizer.json").write_bytes(tok_path.read_bytes())
    pad, sep, eos = tl.special_ids(tokenizer)
    vocab = tokenizer.get_vocab_size()
    key = watermark_key(out / "tokenizer.json", seed, wm_config, "mark")
    wm.save_key(key, out / "watermark-key.json", overwrite=True)
    wrong_keys = [watermark_key(out / "tokenizer.json", seed, wm_config, f"control-{i}")
                  for i in range(WRONG_KEYS)]
    t = lap("tokenizer", t)

    teacher_cfg = tl.LMConfig(vocab_size=vocab, context=settings.context, **settings.teacher)
    base_cfg = tl.LMConfig(vocab_size=vocab, context=settings.context, **settings.base)
    room = settings.context - settings.max_new_tokens  # prompt head length, everywhere
    prompt_ids = tl.encode_batch(tokenizer, corpus.prompts)
    heads = [tl.prompt_head(p, room, sep) for p in prompt_ids]

    def corpus_examples(model_names: list[str]) -> tuple[list, list]:
        texts = [(i, corpus.answers[m][i]) for m in model_names for i in train_ids
                 if corpus.answers[m][i].strip()]
        answers = tl.encode_batch(tokenizer, [a for _, a in texts])
        pairs = [tl.make_example(heads[i], a, settings.context, eos)
                 for (i, _), a in zip(texts, answers)]
        return [e for e, _ in pairs], [0] * len(pairs)  # pre-training: every token is predicted

    # teacher
    # the thread count is part of a trained model's key: float sums in another order give
    # (slightly) different weights, and so different samples
    teacher_key = cache.key("teacher", [tok_key, tl.PRECISION, teacher_cfg.to_dict(),
                                        settings.teacher_train.to_dict(), room, threads])
    examples, starts = corpus_examples(teacher_models)
    teacher, teacher_facts = trained_lm(cache, "teacher", teacher_key, teacher_cfg,
                                        settings.teacher_train, examples, starts, pad)
    t = lap("teacher_training", t)

    # student base
    base_key = cache.key("student-base", [tok_key, tl.PRECISION, base_cfg.to_dict(),
                                          settings.base_train.to_dict(), room, threads])
    examples, starts = corpus_examples(base_models)
    base, base_facts = trained_lm(cache, "student-base", base_key, base_cfg,
                                  settings.base_train, examples, starts, pad)
    t = lap("student_base_training", t)

    # teacher answers: each training prompt samples_per_prompt times, without and with the mark
    slots = [i for _ in range(settings.samples_per_prompt) for i in train_ids]
    gen = dict(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
               top_k=settings.top_k, pad=pad, eos=eos, banned=(pad, sep),
               batch_size=settings.batch_size)
    answers_key = cache.key("teacher-answers", [teacher_key, wm_config.to_dict(), key.key_id,
                                                settings.samples_per_prompt, gen, seed])

    def teacher_answers() -> dict:
        log(f"teacher answers: {len(slots)} unmarked, {len(slots)} marked")
        with single_thread():
            return {"unmarked": tl.generate(teacher, [heads[i] for i in slots], seed=seed, **gen),
                    "marked": tl.generate(teacher, [heads[i] for i in slots], seed=seed + 1,
                                          logits_hook=watermark_hook(key, vocab), **gen)}

    answers, _ = cache.json("teacher-answers", answers_key, teacher_answers)
    # the teacher's own answers to the held-out prompts: what the provider serves, tested
    # exactly like the students' outputs
    eval_slots = [i for _ in range(settings.eval_samples) for i in heldout]
    served_key = cache.key("teacher-heldout", [answers_key, settings.eval_samples])

    def served_answers() -> dict:
        with single_thread():
            return {"unmarked": tl.generate(teacher, [heads[i] for i in eval_slots],
                                            seed=seed + 10, **gen),
                    "marked": tl.generate(teacher, [heads[i] for i in eval_slots],
                                          seed=seed + 11, logits_hook=watermark_hook(key, vocab),
                                          **gen)}

    served, _ = cache.json("teacher-heldout", served_key, served_answers)
    probe_reference = None
    if reference_kind == "probes":
        # the provider answers the prompts it probed the suspect with, unmarked, itself: a
        # reference on the suspect's own topics (other draws than the served answers above)
        probe_key = cache.key("teacher-probe-reference", [served_key, seed + 12])

        def probe_answers() -> dict:
            with single_thread():
                return {"unmarked": tl.generate(teacher, [heads[i] for i in eval_slots],
                                                seed=seed + 12, **gen)}

        probe_reference = cache.json("teacher-probe-reference", probe_key,
                                     probe_answers)[0]["unmarked"]
    t = lap("teacher_generation", t)

    # which slots are marked at each fraction: nested prefixes of one permutation
    slot_order = np.random.default_rng(seed + 2).permutation(len(slots))

    def student_data(fraction: float) -> list[list[int]]:
        marked = set(slot_order[:round(fraction * len(slots))].tolist())
        return [answers["marked" if s in marked else "unmarked"][s] for s in range(len(slots))]

    outputs: dict[str, dict[float, list[list[int]]]] = {"ngram": {}, "neural": {}}  # held-out
    student_facts: dict[str, dict] = {"ngram": {}, "neural": {}}
    for fraction in fractions:
        data_f = student_data(fraction)
        ngram_key = cache.key("student-ngram", [answers_key, fraction, settings.ngram_order,
                                                seed, gen, len(eval_slots)])

        def ngram_outputs() -> dict:
            lm = tl.KneserNeyLM(settings.ngram_order, vocab).fit(
                [heads[i] for i in slots], data_f, eos)
            made = lm.generate([heads[i] for i in eval_slots], settings.max_new_tokens,
                               settings.temperature, settings.top_k, seed + 3, eos, (pad, sep))
            return {"answers": made, "ngrams": lm.num_ngrams}

        result, built = cache.json("student-ngram", ngram_key, ngram_outputs)
        outputs["ngram"][fraction] = result["answers"]
        student_facts["ngram"][fraction] = {"ngrams_by_order": result["ngrams"],
                                            "cached": not built}
        t = lap(f"ngram_{fraction}", t)

        neural_key = cache.key("student-neural", [answers_key, base_key, fraction,
                                                  settings.finetune.to_dict(), seed, gen,
                                                  len(eval_slots), threads])

        def neural_outputs() -> dict:
            pairs = [tl.make_example(heads[i], a, settings.context, eos)
                     for i, a in zip(slots, data_f)]
            student = copy.deepcopy(base)
            log(f"fine-tuning the neural student at {fraction:.0%} marked")
            facts = tl.train(student, [e for e, _ in pairs], [s for _, s in pairs], pad,
                             settings.finetune, log)
            with single_thread():
                made = tl.generate(student, [heads[i] for i in eval_slots], seed=seed + 4,
                                   **gen)
            # how much of the teacher it learned, whatever the mark: its perplexity on the
            # teacher's unmarked answers to prompts nobody trained on
            fit = perplexity(student, [heads[i] for i in eval_slots], served["unmarked"], pad)
            return {"answers": made, "finetune": {**facts, "heldout_teacher_perplexity":
                                                  fit["perplexity"]}}

        result, built = cache.json("student-neural", neural_key, neural_outputs)
        outputs["neural"][fraction] = result["answers"]
        student_facts["neural"][fraction] = {**result["finetune"], "cached": not built}
        t = lap(f"neural_{fraction}", t)

    # detection
    outputs["teacher"] = {0.0: served["unmarked"], 1.0: served["marked"]}
    # the provider's unmarked text, as text tokenised again
    reference = encode(tokenizer, tokenizer.decode_batch(
        answers["unmarked"] if probe_reference is None else probe_reference))
    # the same control keys as above, and more: a key differs from another only by its secret
    shift_keys = [dataclasses.replace(key, secret=control_secret(seed, i))
                  for i in range(shift_control_keys)]
    rows = [{"student": kind, "fraction": fraction,
             **detection_row(key, tokenizer, outputs[kind][fraction], wrong_keys, reference,
                             shift_keys)}
            for kind, shares in (("teacher", (0.0, 1.0)), ("ngram", fractions),
                                 ("neural", fractions)) for fraction in shares]
    t = lap("detection", t)

    # quality: perplexity of the teacher's answers, and of the students' outputs
    slot_heads = [heads[i] for i in slots]
    quality = {name: {ref: perplexity(model, slot_heads, answers[name], pad)
                      for ref, model in (("student_base", base), ("teacher", teacher))}
               for name in ("unmarked", "marked")}
    semantic = semantic_check([corpus.prompts[i] for i in slots],
                              tokenizer.decode_batch(answers["unmarked"]),
                              tokenizer.decode_batch(answers["marked"]), seed + 7)
    eval_heads = [heads[i] for i in eval_slots]
    for row in rows:
        row["perplexity_under_student_base"] = perplexity(
            base, eval_heads, outputs[row["student"]][row["fraction"]], pad)["perplexity"]
    t = lap("perplexity", t)

    # attacks
    attacker_text = [corpus.answers[m][i] for m in base_models for i in train_ids]
    vocabulary = word_vocabulary(attacker_text, 5000)
    synonyms = wordnet_synonyms(Path(os.environ.get("FINGERPRINT_WORDNET_DIR",
                                                    "/usr/share/wordnet")))
    targets = [("teacher", 1.0)] + [(kind, f) for kind in ("ngram", "neural")
                                    for f in ATTACKED_FRACTIONS if f in fractions]
    attacks = []
    for name, fraction in targets:
        texts = tokenizer.decode_batch(outputs[name][fraction])
        for kind, rate in ATTACKS:
            attacked, changed = attack(texts, kind, rate, np.random.default_rng(seed + 6),
                                       vocabulary, synonyms)
            det = wm.detect_texts(key, attacked, tokenizer)
            attacks.append({"student": name, "fraction": fraction, "attack": kind, "rate": rate,
                            "words_changed": round(changed, 4), "pooled": det.pooled.to_dict()})
    lap("attacks", t)

    wrong = np.array([p for r in rows for p in r["wrong_key_p_values"]])
    shift_wrong = np.array([p for r in rows for p in r["shift_wrong_key_p_values"]])
    sign_wrong = np.array([p for r in rows for p in r["shift_wrong_key_sign_p_values"]])
    return {
        "benchmark": "radioactivity", "quick": quick, "settings": settings.to_dict(),
        "shift_reference": reference_kind,
        "torch": {"version": torch.__version__, "precision": tl.PRECISION,
                  "training_threads": threads,
                  "generation_threads": 1},
        "data": {"path": str(data), "sha256": corpus.digest},
        "split": {"heldout_prompts": len(heldout), "train_prompts": len(train_ids),
                  "teacher_models": teacher_models, "base_models": base_models},
        "watermark": {"key_id": key.key_id, **wm_config.to_dict(),
                      "applied": "delta added to green logits before temperature and top-k"},
        "tokenizer": {"type": "byte-level BPE (tokenizers)", "vocab_size": vocab,
                      "path": str(out / "tokenizer.json")},
        "teacher": describe(teacher, teacher_facts, settings.teacher_train,
                            f"answers of {len(teacher_models)} models to the training prompts"),
        "student_base": describe(base, base_facts, settings.base_train,
                                 f"answers of the other {len(base_models)} models to the "
                                 "training prompts"),
        "students": {
            "ngram": {"model": f"interpolated Kneser-Ney {settings.ngram_order}-gram over "
                      "token ids (discount 0.75), answers only, first tokens conditioned on "
                      "the prompt's last token and SEP", "by_fraction": student_facts["ngram"]},
            "neural": {"model": "the student base fine-tuned on the teacher's answers (loss on "
                       "answer tokens only)", "finetune": settings.finetune.to_dict(),
                       "by_fraction": student_facts["neural"]}},
        "teacher_answers": {"per_set": len(slots),
                            "mean_tokens": {k: float(np.mean([len(a) for a in v]))
                                            for k, v in answers.items()}},
        "rows": rows,
        "quality": quality,
        "semantic": semantic,
        "attacks": attacks,
        "control": {"wrong_keys_per_row": WRONG_KEYS, "tests": int(wrong.size),
                    "share_below_0.05": float(np.mean(wrong < 0.05)),
                    "share_below_0.01": float(np.mean(wrong < 0.01)),
                    "min_p": float(wrong.min()),
                    "shift_share_below_0.05": float(np.mean(shift_wrong < 0.05)),
                    "shift_share_below_0.01": float(np.mean(shift_wrong < 0.01)),
                    "shift_tests": int(shift_wrong.size),
                    "shift_keys_per_row": shift_control_keys,
                    "shift_share_below_0.5": float(np.mean(shift_wrong < 0.5)),
                    "shift_min_p": float(shift_wrong.min()),
                    "sign_share_below_0.05": float(np.mean(sign_wrong < 0.05)),
                    "sign_share_below_0.01": float(np.mean(sign_wrong < 0.01)),
                    "sign_min_p": float(sign_wrong.min())},
        "seconds": timings, "wall_seconds": round(time.time() - started, 1),
    }


# --- output ------------------------------------------------------------------------------------

def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def tables(report: dict) -> str:
    from scipy.stats import kstest

    lines = ["| outputs of | marked share | pooled p (text) | green / scored | z | pooled p (ids) "
             "| median response p | responses p<0.01 | wrong-key min p | ppl under student base |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        pooled, ids, per = r["pooled"], r["pooled_token_ids"], r["per_response"]
        name = "teacher itself" if r["student"] == "teacher" else f"{r['student']} student"
        lines.append(
            f"| {name} | {r['fraction']:.0%} | {fmt_p(pooled['p_value'])}"
            f" | {pooled['green']}/{pooled['scored']} ({pooled['green_fraction']:.3f}) | "
            f"{pooled['z']:.1f} | {fmt_p(ids['p_value'])} | {fmt_p(per['median_p'])} | "
            f"{per['share_p_below_0.01']:.2f} | {fmt_p(min(r['wrong_key_p_values']))} | "
            f"{r['perplexity_under_student_base']:.1f} |")
    q = report["quality"]
    lines += ["", "| outputs of | marked share | shift test p (weighted) | lean | sign test p "
              "| green among up windows | windows | control keys: weighted p < 0.05, min, KS p | "
              "sign p < 0.05, min, KS p |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        sh = r["shift"]
        name = "teacher itself" if r["student"] == "teacher" else f"{r['student']} student"
        share = "-" if sh["green_share_up"] is None else f"{sh['green_share_up']:.3f}"
        ctl, sign = (np.array(r[f]) for f in ("shift_wrong_key_p_values",
                                              "shift_wrong_key_sign_p_values"))
        lines.append(f"| {name} | {r['fraction']:.0%} | {fmt_p(sh['weighted_p'])} | "
                     f"{sh['lean']:.3f} | {fmt_p(sh['sign_p'])} | {sh['green_up']}/{sh['up']} "
                     f"({share}) | {sh['windows']} | {int((ctl < 0.05).sum())}/{ctl.size}, "
                     f"{fmt_p(ctl.min())}, {fmt_p(kstest(ctl, 'uniform').pvalue)} | "
                     f"{int((sign < 0.05).sum())}/{sign.size}, {fmt_p(sign.min())}, "
                     f"{fmt_p(kstest(sign, 'uniform').pvalue)} |")
    lines += ["", "| teacher answers | ppl under student base | ppl under teacher (no mark) | "
              "median answer ppl (base) |", "|---|---|---|---|"]
    for name in ("unmarked", "marked"):
        lines.append(f"| {name} | {q[name]['student_base']['perplexity']:.2f} | "
                     f"{q[name]['teacher']['perplexity']:.2f} | "
                     f"{q[name]['student_base']['median_answer_perplexity']:.2f} |")
    sem = report["semantic"]
    lines += ["", f"semantic check ({sem['pairs']} prompts, MiniLM cosine to the prompt): "
              f"unmarked {sem['relevance_unmarked']:.4f}, marked {sem['relevance_marked']:.4f} "
              f"(drop {sem['drop']:.4f} +- {sem['drop_standard_error']:.4f}), a shuffled "
              f"prompt {sem['relevance_shuffled_prompt']:.4f}; cost "
              + ("n/a" if sem["cost_share"] is None else f"{sem['cost_share']:.1%}")
              + " of the relevance above the shuffled floor"]
    lines += ["", "| outputs of | attack | words changed | pooled p | green fraction |",
              "|---|---|---|---|---|"]
    for a in report["attacks"]:
        lines.append(f"| {a['student']} {a['fraction']:.0%} | {a['attack']} {a['rate']:.0%} | "
                     f"{a['words_changed']:.2f} | {fmt_p(a['pooled']['p_value'])} | "
                     f"{a['pooled']['green_fraction']:.3f} |")
    c = report["control"]
    lines.append(f"\ncontrol: {c['tests']} tests under keys that marked nothing: "
                 f"{c['share_below_0.05']:.3f} below 0.05, min p {fmt_p(c['min_p'])}; "
                 f"{c['shift_tests']} shift tests: weighted {c['shift_share_below_0.05']:.3f} "
                 f"below 0.05, {c['shift_share_below_0.01']:.3f} below 0.01, "
                 f"{c['shift_share_below_0.5']:.3f} below 0.5, min p {fmt_p(c['shift_min_p'])}; "
                 f"sign {c['sign_share_below_0.05']:.3f} below 0.05, min p "
                 f"{fmt_p(c['sign_min_p'])}")
    for fraction, facts in report["students"]["neural"]["by_fraction"].items():
        fit = facts.get("heldout_teacher_perplexity")
        lines.append(f"neural student {float(fraction):.0%}: fine-tune {facts['steps']} steps, "
                     f"{facts['tokens']:,} tokens, {facts['seconds']:.0f} s; perplexity of the "
                     f"teacher's held-out unmarked answers "
                     f"{'-' if fit is None else f'{fit:.2f}'}")
    lines.append(f"wall time {report['wall_seconds']:.0f} s: " + ", ".join(
        f"{k} {v:.0f}" for k, v in report["seconds"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/alpacaeval")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out/radioactivity")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and few prompts: a smoke test of a few minutes")
    parser.add_argument("--delta", type=float, default=wm.WatermarkConfig.delta)
    parser.add_argument("--gamma", type=float, default=wm.WatermarkConfig.gamma)
    parser.add_argument("--context-width", type=int, default=wm.WatermarkConfig.context_width,
                        help="the mark's context width (0: one green list for every step)")
    parser.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS),
                        help="marked shares of the students' training data, comma-separated")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="answers per held-out prompt from each model tested (default 2)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="the BPE tokenizer's vocabulary (default 4,096): at width 0 the "
                        "shift test has one window per token type")
    parser.add_argument("--finetune-epochs", type=float, default=None,
                        help="epochs of the neural student's fine-tuning (default 2)")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="its peak learning rate (default 5e-4)")
    parser.add_argument("--shift-control-keys", type=int, default=SHIFT_CONTROL_KEYS,
                        help="keys that marked nothing, each model's outputs shift-tested "
                        "under every one (the null check of the shift test)")
    parser.add_argument("--reference", choices=("train", "probes"), default="train",
                        help="the shift test's unmarked reference: the teacher's answers to the "
                        "training prompts (default) or to the probe prompts themselves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads for training (generation always uses one); on a "
                        "machine busy with other work, 1 is faster")
    parser.add_argument("--json", action="store_true", help="print the JSON object only")
    args = parser.parse_args()
    out = args.out / "quick" if args.quick else args.out
    config = wm.WatermarkConfig(context_width=args.context_width, gamma=args.gamma,
                                delta=args.delta)
    fractions = tuple(float(f) for f in args.fractions.split(","))
    settings = QUICK if args.quick else FULL
    if args.eval_samples is not None:
        settings = dataclasses.replace(settings, eval_samples=args.eval_samples)
    if args.vocab_size is not None:
        settings = dataclasses.replace(settings, vocab_size=args.vocab_size)
    finetune = {k: v for k, v in (("epochs", args.finetune_epochs), ("lr", args.finetune_lr))
                if v is not None}
    if finetune:
        settings = dataclasses.replace(
            settings, finetune=dataclasses.replace(settings.finetune, **finetune))
    report = run(args.data, out, settings, config, args.seed, args.threads, args.quick,
                 fractions, args.shift_control_keys, args.reference)
    (out / "radioactivity.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    if not args.json:
        print(tables(report))


if __name__ == "__main__":
    main()
