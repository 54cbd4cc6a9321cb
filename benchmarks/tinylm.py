"""Small language models trained from scratch on CPU, for benchmarks/radioactivity.py only.

No pretrained language model can be loaded on this project's machines, so the radioactivity
benchmark trains its own: a byte-level BPE tokenizer, small decoder-only transformers (teacher,
student base, fine-tuned students) and a count-based n-gram model. Everything here is sized for
two CPU cores and a run of tens of minutes, not for quality; it exists so that watermark
radioactivity is measured on models that really learn from text, not on simulated ones.

Conventions shared by every model here: an example is ``prompt head + answer ids + [EOS]``, the
head being the prompt's last ids and SEP (``prompt_head``: the end of an instruction is closest
to the answer; the same cut in training and in generation). Prompt and answer are tokenised
separately, so an answer's ids never depend on its prompt, as when a detector re-tokenises an
answer's text alone. Sampling calls an optional ``logits_hook(history, logits)`` before
temperature and top-k, the same place as a logits processor in Hugging Face's ``generate``:
that is where the watermark's green-list bias goes.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD, SEP, EOS = "<|pad|>", "<|sep|>", "<|eos|>"
SPECIAL_TOKENS = (PAD, SEP, EOS)

# history: np.int64 (batch, tokens so far, prompt included); logits: float32 (batch, vocab).
LogitsHook = Callable[[np.ndarray, torch.Tensor], torch.Tensor]


def _cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX). Without it torch
    emulates bf16 matrix products, about 30x slower than float32 (measured on an AMD EPYC
    without the flag, torch 2.13: one training step of the teacher took 46 s instead of ~1 s)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16 = _cpu_has_bf16()
PRECISION = "bfloat16 matrix products" if BF16 else "float32"  # part of every trained model's key


# --- tokenizer ---------------------------------------------------------------------------------

def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE (GPT-2 style pre-tokenisation) with PAD, SEP and EOS as ids 0, 1, 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def special_ids(tokenizer) -> tuple[int, int, int]:
    return tuple(tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)  # type: ignore[return-value]


def encode_batch(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def prompt_head(prompt: list[int], room: int, sep: int) -> list[int]:
    """What the model is given before an answer: the prompt's last ``room - 1`` ids and SEP."""
    return (prompt[-(room - 1):] if room > 1 else []) + [sep]


def make_example(head: list[int], answer: list[int], context: int,
                 eos: int) -> tuple[list[int], int]:
    """``head + answer + [EOS]`` cut to ``context`` tokens, and where the answer starts. A cut
    answer loses its EOS: the model never learns to stop where the window happened to end."""
    return (head + answer + [eos])[:context], len(head)


# --- transformer -------------------------------------------------------------------------------

@dataclass(frozen=True)
class LMConfig:
    vocab_size: int
    context: int = 256
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """Pre-LayerNorm transformer block; attention takes an explicit key mask and a KV cache."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                cache: tuple[torch.Tensor, torch.Tensor] | None, filled: int):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4)
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # generation: write into the preallocated buffers, no copy of the past
            cache[0][:, :, filled:filled + t] = k
            cache[1][:, :, filled:filled + t] = v
            k, v = cache[0][:, :, :filled + t], cache[1][:, :, :filled + t]
            # float32 attention over the cache: on CPU, bf16 attention for one query is
            # slower, not faster (measured)
            with torch.autocast("cpu", enabled=False):
                a = F.scaled_dot_product_attention(q.float(), k, v, attn_mask=mask)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyLM(nn.Module):
    """GPT-2-like decoder: learned positions, tied input/output embeddings."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block, float32 key and value buffers for ``context`` positions."""
        shape = (batch, self.cfg.n_heads, self.cfg.context, self.cfg.d_model // self.cfg.n_heads)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: list | None = None,
                filled: int = 0) -> torch.Tensor:
        """Logits for every position. For batched generation: ``mask`` (bool, True = may
        attend) over the cached and new keys, and ``cache`` (from ``new_cache``) whose first
        ``filled`` positions are already written; else plain causal attention."""
        if positions is None:
            positions = torch.arange(ids.shape[1]).expand_as(ids)
        x = self.tok(ids) + self.pos(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if cache is None else cache[i], filled)
        return self.ln(x) @ self.tok.weight.T


def batches_by_length(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                      pool: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples (little padding), in random order."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start:start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(examples: Sequence[list[int]], loss_from: Sequence[int],
              pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and a loss mask (targets at index >= loss_from - 1 that are not padding)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    weight = torch.zeros((len(examples), width - 1))
    for i, (e, start) in enumerate(zip(examples, loss_from)):
        ids[i, :len(e)] = torch.tensor(e)
        weight[i, max(start - 1, 0):len(e) - 1] = 1.0
    return ids[:, :-1], ids[:, 1:], weight


@dataclass(frozen=True)
class TrainConfig:
    epochs: float
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def train(model: TinyLM, examples: Sequence[list[int]], loss_from: Sequence[int], pad: int,
          cfg: TrainConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """AdamW, linear warm-up then cosine decay to 10%, gradient clipping at 1, bf16 autocast
    where the CPU has bf16 (``BF16``), else float32.

    ``loss_from[i]`` is the first position of example i whose token is predicted (0: every
    token, as in pre-training; the answer start: only the answer, as in supervised fine-tuning).
    Returns the training facts (steps, tokens, seconds, last losses).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    lengths = np.array([len(e) for e in examples])
    steps = int(cfg.epochs * math.ceil(len(examples) / cfg.batch_size))
    plan: list[np.ndarray] = []
    while len(plan) < steps:  # whole shuffled epochs, the last one cut
        plan.extend(batches_by_length(lengths, cfg.batch_size, rng))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=cfg.lr,
                            betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    started, tokens, recent = time.time(), 0, []
    for step, batch in enumerate(plan[:steps]):
        inputs, targets, weight = pad_batch([examples[i] for i in batch],
                                            [loss_from[i] for i in batch], pad)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
            logits = model(inputs)
        losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                 targets.reshape(-1), reduction="none")
        loss = (losses * weight.reshape(-1)).sum() / weight.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(inputs.numel())
        recent = (recent + [loss.item()])[-50:]
        if step % 200 == 0 or step == steps - 1:
            log(f"  step {step + 1}/{steps} loss {np.mean(recent):.3f} "
                f"({tokens / max(time.time() - started, 1e-9):.0f} tok/s)")
    model.eval()
    return {"steps": steps, "tokens": tokens, "seconds": round(time.time() - started, 1),
            "final_loss": round(float(np.mean(recent)), 4)}


@torch.no_grad()
def answer_nll(model: TinyLM, examples: Sequence[list[int]], loss_from: Sequence[int],
               pad: int, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per example: summed negative log-likelihood (nats) of its predicted tokens, and their
    count. Full precision (no autocast): these numbers are reported, not just descended."""
    model.eval()
    nll = np.zeros(len(examples))
    count = np.zeros(len(examples))
    order = np.argsort([len(e) for e in examples], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        inputs, targets, weight = pad_batch([examples[i] for i in idx],
                                            [loss_from[i] for i in idx], pad)
        logits = model(inputs)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="none").reshape(weight.shape)
        nll[idx] = (losses * weight).sum(1).numpy()
        count[idx] = weight.sum(1).numpy()
    return nll, count


def sample(logits: torch.Tensor, temperature: float, top_k: int,
           generator: torch.Generator) -> torch.Tensor:
    """One token id per row (batch, 1): temperature, then the ``top_k`` most likely (0: all)."""
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        values, ids = torch.topk(logits, top_k, dim=-1)
        choice = torch.multinomial(torch.softmax(values, dim=-1), 1, generator=generator)
        return ids.gather(1, choice)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


def trim(tokens: Iterable[int], eos: int) -> list[int]:
    """Generated tokens up to (not including) the first EOS."""
    out = []
    for t in tokens:
        if t == eos:
            break
        out.append(int(t))
    return out


@torch.no_grad()
@torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16)
def generate(model: TinyLM, prompts: Sequence[list[int]], max_new_tokens: int,
             temperature: float, top_k: int, seed: int, pad: int, eos: int,
             banned: Sequence[int] = (), logits_hook: LogitsHook | None = None,
             batch_size: int = 64) -> list[list[int]]:
    """Sample one answer per prompt head (see ``prompt_head``); answers exclude EOS, and never
    contain the ``banned`` ids (PAD, SEP: tokens that are never part of an answer).

    Batched with a KV cache: prompts of similar length are left-padded together, padding keys
    are masked out and positions start at 0 at each prompt's first real token, so a prompt is
    continued exactly as it would be alone. Each batch has its own seeded generator, so the
    result does not depend on which other work ran before. Matrix products run in bfloat16
    where the CPU has it (about 3x faster than float32 for these small products with AVX-512
    BF16; ``BF16``), else in float32; attention over the float32 cache in float32.
    """
    model.eval()
    if any(len(p) + max_new_tokens > model.cfg.context for p in prompts):
        raise ValueError("a prompt head leaves no room for max_new_tokens in the context")
    banned_ids = torch.tensor(list(banned), dtype=torch.long)
    order = np.argsort([len(p) for p in prompts], kind="stable")
    results: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        valid = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, i in enumerate(idx):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            valid[row, width - len(prompts[i]):] = True
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
        # a padding query may see itself, so that no softmax row is empty (no NaN)
        mask = (causal & valid[:, None, :]) | torch.eye(width, dtype=torch.bool)
        cache = model.new_cache(len(idx))
        logits = model(ids, positions, mask[:, None], cache, 0)
        history = ids.numpy()
        next_pos = positions[:, -1:] + 1
        done = torch.zeros(len(idx), dtype=torch.bool)
        out = []
        for step in range(max_new_tokens):
            last = logits[:, -1, :].float()
            last[:, banned_ids] = float("-inf")
            if logits_hook is not None:
                last = logits_hook(history, last)
            token = sample(last, temperature, top_k, gen)
            token[done] = eos
            out.append(token)
            done |= token[:, 0] == eos
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            history = np.concatenate([history, token.numpy()], axis=1)
            valid = torch.cat([valid, torch.ones((len(idx), 1), dtype=torch.bool)], dim=1)
            logits = model(token, next_pos, valid[:, None, None, :], cache, valid.shape[1] - 1)
            next_pos = next_pos + 1
        tokens = torch.cat(out, dim=1).numpy()
        for row, i in enumerate(idx):
            results[i] = trim(tokens[row], eos)
    return results


# --- count-based n-gram model ------------------------------------------------------------------

class KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model over token ids (Chen & Goodman's formulation, one
    discount per order), trained on answers only and sampled like the transformers.

    An answer's first tokens are conditioned on the end of its prompt and SEP (the n-gram's only
    view of the prompt). The highest order uses raw counts; lower orders use continuation counts
    (how many distinct tokens precede a shorter n-gram), and the unigram level interpolates with
    the uniform distribution, so every token has non-zero probability.
    """

    def __init__(self, order: int, vocab_size: int, discount: float = 0.75):
        self.order, self.vocab_size, self.discount = order, vocab_size, discount

    def fit(self, prompts: Sequence[list[int]], answers: Sequence[list[int]],
            eos: int) -> "KneserNeyLM":
        n = self.order
        top: Counter = Counter()
        for prompt, answer in zip(prompts, answers):
            seq = self._start(prompt) + list(answer) + [eos]
            for i in range(n - 1, len(seq)):
                top[tuple(seq[i - n + 1:i + 1])] += 1
        # counts[k]: k-gram -> count used at order k (raw at the top, continuation below)
        counts: dict[int, Counter] = {n: top}
        for k in range(n - 1, 0, -1):
            counts[k] = Counter(g[1:] for g in counts[k + 1])
        self.tables = {k: self._table(c) for k, c in counts.items() if k > 1}
        unigram = np.zeros(self.vocab_size)
        for (w,), c in counts[1].items():
            unigram[w] = c
        total = unigram.sum()
        types = np.count_nonzero(unigram)
        self.base = (np.maximum(unigram - self.discount, 0) / total
                     + self.discount * types / total / self.vocab_size)
        self.num_ngrams = {k: len(c) for k, c in counts.items()}
        return self

    def _start(self, prompt: Sequence[int]) -> list[int]:
        """The history an answer starts from: the prompt's last n-1 tokens (it ends with SEP;
        a shorter prompt is padded with that SEP)."""
        return ([prompt[-1]] * (self.order - 1) + list(prompt))[-(self.order - 1):]

    def _table(self, counts: Counter) -> dict:
        """context -> (next tokens, discounted probability mass, back-off weight)."""
        by_context: dict[tuple, list] = {}
        for g, c in counts.items():
            by_context.setdefault(g[:-1], []).append((g[-1], c))
        table = {}
        for ctx, items in by_context.items():
            words = np.array([w for w, _ in items], dtype=np.int64)
            c = np.array([c for _, c in items], dtype=np.float64)
            total = c.sum()
            table[ctx] = (words, np.maximum(c - self.discount, 0) / total,
                          self.discount * len(items) / total)
        return table

    def distribution(self, history: Sequence[int]) -> np.ndarray:
        p = self.base.copy()
        for k in range(2, self.order + 1):
            if len(history) < k - 1:
                break
            entry = self.tables[k].get(tuple(history[len(history) - k + 1:]))
            if entry is not None:
                words, mass, backoff = entry
                p *= backoff
                p[words] += mass
        return p

    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int, temperature: float,
                 top_k: int, seed: int, eos: int, banned: Sequence[int] = ()) -> list[list[int]]:
        """Sample one answer per prompt head, as the transformers do (temperature, then top-k)."""
        rng = np.random.default_rng(seed)
        banned_ids = np.array(list(banned), dtype=np.int64)
        results = []
        for prompt in prompts:
            history = self._start(prompt)
            answer: list[int] = []
            for _ in range(max_new_tokens):
                p = self.distribution(history)
                logp = np.log(p) / temperature
                logp[banned_ids] = -np.inf
                if 0 < top_k < len(p):
                    kth = np.partition(logp, -top_k)[-top_k]
                    logp[logp < kth] = -np.inf
                q = np.exp(logp - logp.max())
                token = int(rng.choice(len(q), p=q / q.sum()))
                if token == eos:
                    break
                answer.append(token)
                history = (history + [token])[-(self.order - 1):]
            results.append(answer)
        return results
