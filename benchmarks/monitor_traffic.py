"""Simulated API request logs built from real prompt text, for the extraction monitor (issue 15).

    python benchmarks/monitor_traffic.py --out DIR --seed N [--scale small|full]
        [--data ../shared/data/monitor] [--alpacaeval ../shared/data/alpacaeval/prompts.jsonl]

Writes ``requests.jsonl.gz`` (the log to score), ``baseline.jsonl.gz`` and ``calibration.jsonl.gz``
(benign-only logs for fitting and calibrating a monitor), ``truth.json`` (every account's kind,
campaign source, mixing share and hydra group), and prints a JSON summary and a table. Imported
by the monitor benchmark and tests: ``TrafficConfig``, ``build``, ``split_of``, ``load_sources``.

What is real and what is simulated
----------------------------------
Real: the text of every user turn. Benign turns are ShareGPT conversations
(``benign/sharegpt.jsonl``, read in place, never copied), sent in their order; campaign prompts
are T0/PromptSource template fillings (``campaigns/t0_templated.jsonl``), the self-instruct seed
and user-oriented tasks (``campaigns/self_instruct.jsonl``) and AlpacaEval's 805 instructions
(an evaluation-harvesting campaign). Campaign prompts that also occur as a ShareGPT turn (14 of
AlpacaEval's) and repeats within a source are dropped, so a request's origin is decidable from
its text. Note that 252 self-instruct prompts are also AlpacaEval prompts (AlpacaEval includes the
self-instruct user-oriented set).

Simulated (invented here, not measured), all drawn from one ``numpy`` generator per log seeded
with ``[seed, log]``, so a seed gives byte-identical files:
- Clock: the log starts ``start`` and spans ``days``. Activity by local hour follows ``HOURLY``
  (low 2-6 h, peak 13-16 h), an account's (or an app's end user's) local time is UTC plus an offset
  drawn from ``TZ_OFFSETS`` by ``TZ_WEIGHTS``. A "diurnal" time is drawn uniformly over the window
  and kept with probability ``HOURLY[local hour]`` (rejection sampling).
- Benign individual: N conversations, N = 1 + floor(``conversation_scale`` * Lomax(2)) capped at
  ``max_conversations`` (heavy-tailed, mean about 3); each conversation starts at a diurnal time and
  its turns follow with log-normal think times (median ``think_median_s``, sigma ``think_sigma``,
  at least ``think_min_s``). Every request carries the conversation so far: the earlier user turns
  with ``{"role": "assistant", "content": "(earlier answer)"}`` between them, the new turn last.
- Benign app (a heavy API customer relaying its users): log-uniform in ``app_users`` end users,
  each with its own time-zone offset and 1 + floor(``end_user_conversation_scale`` * Lomax(2))
  conversations timed as above (so the app's volume is steady and diurnal); ``request.user`` is
  the end user. The first ``wrapped_apps`` apps wrap every user turn in one of the three invented
  ``APP_WRAPPERS`` (a router maker's support bot, a translation helper, a tutoring app whose
  wrapper asks for step-by-step explanations: a benign template with an elicitation marker).
- Campaign account at level L (1.0, 0.5, 0.25, 0.1, 0.05): ``level_requests`` total requests, of
  which round(L * total) single-turn campaign prompts and the rest benign cover traffic built like
  an individual's (whole conversations dealt until the count is met, the last one cut short).
  A T0 campaign samples ``t0_templates`` templates (more while their fillings are too few) and
  sends their fillings in random order; the other sources are sent in random order. A campaign
  sends a prompt twice only when it needs more than its source holds (never at the default sizes;
  truth.json gives ``distinct_prompts``). Pacing ``fast``: bursts of 1 + Poisson(``burst_mean`` - 1)
  requests, exponential gaps of mean ``burst_gap_s`` inside a burst (several per second); a pure
  campaign pauses Exp(``burst_pause_s``) between bursts from a diurnal start, a mixed one places
  its bursts at diurnal times over the window. Pacing ``careful`` (paced like an app): a pure
  campaign is a Poisson process of peak rate U(``careful_per_minute``) thinned by ``HOURLY`` from a
  diurnal start; a mixed one draws its campaign times as diurnal times over the window (a diurnal
  Poisson process given its count). Mixed campaign and cover traffic share the whole window.
- Hydra group (``hydra``: size G, source, how many groups): one campaign's prompts split into G
  consecutive slices, one per account, each account U(``hydra_requests``) requests, all pure; the
  accounts share the group's pacing (fast or careful, alternating by group), time zone and rate,
  and start within ``hydra_start_jitter_s`` of the group's diurnal start.
- Accounts are named ``acct-`` + 12 random hex digits and end users ``user-`` + 10, request ids
  ``req-`` + 16: nothing in a name tells its kind. Every request has ``model: "provider-model"``.
- Lines are written in order of timestamp + U(-2.5 s, 2.5 s), so two lines less than 5 s apart
  may swap; accounts interleave as they do in a real log. Timestamps are ISO 8601 UTC with
  millisecond precision.

Splits: ``split_of`` puts each ShareGPT conversation, by the SHA-256 of its id (independent of the
seed), in ``baseline``, ``calibration`` or ``evaluation`` (fractions ``split``). Only evaluation
conversations enter ``requests.jsonl.gz``; ``baseline.jsonl.gz`` and ``calibration.jsonl.gz`` hold
benign traffic (``log_apps`` unwrapped apps, then individuals until the part, or its first
``log_conversations`` conversations, is used once) built from their part alone, so no evaluation conversation is ever in them. The benign logs use no
wrapper: the evaluation's wrapped apps are customers a baseline has not seen. Campaign prompts
are all evaluation material: a one-class monitor fits on benign traffic only, so none is held out
for fitting and none appears in the benign logs.

Reuse (the one compromise the data forces): the evaluation part holds 3,425 conversations
(15,020 turns), far fewer than the cover traffic of mixed accounts needs (a 5% account is 2,850
benign requests; the full scale's covers are about 150,000). Conversations are dealt from the part
in a seeded order, a new order once it is used up: individuals are dealt first (disjoint from
each other at the default sizes), then apps, then campaign covers. No account holds a
conversation twice while the part allows, but apps and campaign covers share conversations with
each other and with individuals (truth.json's ``passes``: 11 at the full scale). A cross-account
signal that links accounts by shared benign text will find such links here that real traffic
would not have.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gzip
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fingerprint.atomic import atomic_write_bytes
from fingerprint.errors import ConfigError, InputError

DATA = ROOT.parent / "shared" / "data"
PARTS = ("baseline", "calibration", "evaluation")
SOURCES = ("t0", "self_instruct", "alpacaeval")
PACINGS = ("fast", "careful")
HOURLY = np.array([0.30, 0.20, 0.15, 0.12, 0.12, 0.15, 0.25, 0.40, 0.60, 0.80, 0.90, 0.95,
                   0.95, 1.00, 1.00, 1.00, 0.95, 0.90, 0.85, 0.85, 0.80, 0.70, 0.55, 0.40])
TZ_OFFSETS = (-8.0, -7.0, -6.0, -5.0, -3.0, 0.0, 1.0, 2.0, 3.0, 5.5, 8.0, 9.0)
TZ_WEIGHTS = (0.08, 0.03, 0.06, 0.13, 0.04, 0.08, 0.14, 0.06, 0.04, 0.12, 0.14, 0.08)
EARLIER_ANSWER = "(earlier answer)"
MODEL = "provider-model"


@dataclass(frozen=True)
class Wrapper:
    """An app's fixed template around every user turn (and its system message)."""

    system: str
    prefix: str
    suffix: str

    def apply(self, text: str) -> str:
        return f"{self.prefix}{text}{self.suffix}"

    def strip(self, text: str) -> str | None:
        """The user's own text inside a wrapped turn, or None if ``text`` is not wrapped so."""
        if text.startswith(self.prefix) and text.endswith(self.suffix) and \
                len(text) >= len(self.prefix) + len(self.suffix):
            return text[len(self.prefix):len(text) - len(self.suffix)]
        return None


APP_WRAPPERS = {
    "support": Wrapper(
        "You are the customer support assistant of Northwind Routers. Be polite and concise.",
        "A customer wrote to Northwind support:\n\"\"\"\n",
        "\n\"\"\"\nReply to the customer. If it is not about our routers, still help briefly."),
    "translate": Wrapper(
        "You are LinguaBridge, a translation helper.",
        "Translate the following message into French, keeping its formatting, then answer it "
        "in French.\n\nMessage:\n", ""),
    "tutor": Wrapper(
        "You are Tutorly, a patient tutor for secondary-school and university students.",
        "Student question: ",
        "\n\nExplain step by step, as a tutor would, and end with one short practice question."),
}


@dataclass(frozen=True)
class TrafficConfig:
    """Every parameter of the simulation (the module docstring says how each is used); the
    defaults are the full scale, ``preset("small")`` the one tests use."""

    seed: int = 0
    scale: str = "full"
    start: str = "2026-11-16T00:00:00Z"
    days: float = 5.0
    split: tuple[float, float, float] = (0.35, 0.15, 0.50)
    individuals: int = 1000
    conversation_scale: float = 2.5
    max_conversations: int = 50
    think_median_s: float = 60.0
    think_sigma: float = 1.0
    think_min_s: float = 2.0
    apps: int = 6
    wrapped_apps: int = 3
    app_users: tuple[int, int] = (50, 500)
    end_user_conversation_scale: float = 1.0
    log_apps: int = 2
    log_app_share: float = 0.3
    log_conversations: int = 0
    levels: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.05)
    level_requests: tuple[int, ...] = (400, 800, 1600, 3000, 3000)
    sources: tuple[str, ...] = SOURCES
    pacings: tuple[str, ...] = PACINGS
    accounts_per_cell: int = 3
    t0_templates: tuple[int, int] = (3, 8)
    burst_mean: float = 8.0
    burst_gap_s: float = 0.25
    burst_pause_s: float = 30.0
    careful_per_minute: tuple[float, float] = (2.0, 5.0)
    hydra: tuple[tuple[int, str, int], ...] = ((10, "t0", 4), (10, "alpacaeval", 3),
                                               (50, "t0", 10), (100, "t0", 2))
    hydra_requests: tuple[int, int] = (50, 70)
    hydra_start_jitter_s: float = 1800.0

    @classmethod
    def preset(cls, scale: str, seed: int = 0) -> TrafficConfig:
        if scale == "full":
            return cls(seed=seed)
        if scale == "small":
            return cls(seed=seed, scale="small", days=2.0, individuals=150, apps=3, wrapped_apps=2,
                       app_users=(50, 80), log_apps=1, log_conversations=400,
                       level_requests=(60, 120, 240, 400, 600),
                       accounts_per_cell=1, hydra=((10, "t0", 1), (10, "alpacaeval", 1)))
        raise ConfigError(f"scale: {scale!r} is not one of small, full")

    def __post_init__(self) -> None:
        try:
            problems = [f"{name}: {why}" for name, bad, why in self._checks() if bad]
        except TypeError as exc:
            raise ConfigError(f"TrafficConfig: a field has the wrong type ({exc})") from None
        if problems:
            raise ConfigError("TrafficConfig: " + "; ".join(problems))

    def _checks(self) -> list[tuple[str, bool, str]]:
        def span(pair) -> bool:
            return len(pair) != 2 or not 0 < pair[0] <= pair[1]

        return [
            ("start", parse_time(self.start) is None, "must be ISO 8601 UTC"),
            ("days", not self.days > 0, "must be > 0"),
            ("split", len(self.split) != 3 or min(self.split) <= 0
             or abs(sum(self.split) - 1) > 1e-9, "three fractions > 0 summing to 1"),
            ("levels", not self.levels or any(not 0 < x <= 1 for x in self.levels)
             or len(set(self.levels)) != len(self.levels), "distinct, each in (0, 1]"),
            ("level_requests", len(self.level_requests) != len(self.levels)
             or any(round(x * n) < 1 for x, n in zip(self.levels, self.level_requests)),
             "one per level, each leaving >= 1 campaign request"),
            ("sources", not set(self.sources) <= set(SOURCES), f"a subset of {SOURCES}"),
            ("pacings", not self.pacings or not set(self.pacings) <= set(PACINGS),
             f"a subset of {PACINGS}"),
            ("hydra", any(len(h) != 3 or h[0] < 2 or h[1] not in SOURCES or h[2] < 0
                          for h in self.hydra), "(size >= 2, source, count >= 0) each"),
            ("counts", min(self.seed, self.individuals, self.apps, self.wrapped_apps,
                           self.log_apps, self.log_conversations, self.accounts_per_cell,
                           self.max_conversations - 1) < 0,
             ("seed, individuals, apps, wrapped_apps, log_apps, log_conversations, "
              "accounts_per_cell >= 0, "
              "max_conversations >= 1")),
            ("ranges", any(span(p) for p in (self.app_users, self.t0_templates,
                                             self.careful_per_minute, self.hydra_requests)),
             "app_users, t0_templates, careful_per_minute, hydra_requests: 0 < low <= high"),
            ("times", min(self.think_median_s, self.think_sigma, self.think_min_s,
                          self.burst_mean - 1 + 1e-9, self.burst_gap_s, self.burst_pause_s) <= 0
             or self.hydra_start_jitter_s < 0 or not 0 < self.log_app_share < 1,
             ("think and burst parameters > 0 (burst_mean >= 1), jitter >= 0, "
              "log_app_share in (0, 1)")),
            ("scale", self.scale not in ("small", "full"), "small or full"),
        ]


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (UTC when it names no offset), else None."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except (ValueError, TypeError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()


def format_ms(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms // 1000, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def split_of(conversation_id: str, fractions: tuple[float, float, float] = (0.35, 0.15, 0.50)
             ) -> str:
    """The part (baseline, calibration, evaluation) a conversation belongs to: a function of its
    id alone, so every seed and every run agree on it."""
    digest = hashlib.sha256(conversation_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2 ** 64
    return PARTS[0] if u < fractions[0] else PARTS[1] if u < fractions[0] + fractions[1] \
        else PARTS[2]


def split_conversations(ids, fractions=(0.35, 0.15, 0.50)) -> dict[str, list[int]]:
    """Indices of ``ids`` per part, in order."""
    parts: dict[str, list[int]] = {p: [] for p in PARTS}
    for i, cid in enumerate(ids):
        parts[split_of(cid, fractions)].append(i)
    return parts


@dataclass(frozen=True)
class Sources:
    """The real text: ShareGPT conversations (user turns in order) and campaign prompt sets."""

    conversation_ids: tuple[str, ...]
    conversations: tuple[tuple[str, ...], ...]
    campaigns: dict[str, tuple[str, ...]]
    templates: dict[str, tuple[int, ...]]  # T0 template -> indices into campaigns["t0"]


def _jsonl(path: Path, fields: tuple[str, ...]):
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(str(path), number, f"not JSON: {exc.msg}") from None
                for name in fields:
                    if not isinstance(obj.get(name) if isinstance(obj, dict) else None,
                                      (str, int)):
                        raise InputError(str(path), number, "missing or not a string/int",
                                         field=name)
                yield number, obj
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror or exc}") from None


def load_sources(data: str | os.PathLike[str] = DATA / "monitor",
                 alpacaeval: str | os.PathLike[str] = DATA / "alpacaeval" / "prompts.jsonl"
                 ) -> Sources:
    data = Path(data)
    ids: list[str] = []
    turns: list[list[str]] = []
    path = data / "benign" / "sharegpt.jsonl"
    for number, obj in _jsonl(path, ("conversation", "turn", "prompt")):
        if not ids or ids[-1] != obj["conversation"]:
            ids.append(obj["conversation"])
            turns.append([])
        if obj["turn"] != len(turns[-1]):
            raise InputError(str(path), number, "a conversation's turns must be consecutive, "
                             "from 0, in one block", field="turn")
        turns[-1].append(obj["prompt"])
    if len(set(ids)) != len(ids):
        raise InputError(str(path), None, "a conversation id occurs in two separate blocks",
                         field="conversation")
    benign = {t for conv in turns for t in conv}
    raw = {"t0": (data / "campaigns" / "t0_templated.jsonl", "prompt", "template"),
           "self_instruct": (data / "campaigns" / "self_instruct.jsonl", "prompt", None),
           "alpacaeval": (Path(alpacaeval), "instruction", None)}
    campaigns: dict[str, tuple[str, ...]] = {}
    templates: dict[str, list[int]] = {}
    for name, (file, text_field, group_field) in raw.items():
        seen: dict[str, int] = {}
        for _, obj in _jsonl(file, (text_field,) + ((group_field,) if group_field else ())):
            text = obj[text_field]
            if text.strip() and text not in benign and text not in seen:
                seen[text] = len(seen)
                if group_field:
                    templates.setdefault(obj[group_field], []).append(seen[text])
        campaigns[name] = tuple(seen)
    return Sources(tuple(ids), tuple(tuple(t) for t in turns), campaigns,
                   {k: tuple(v) for k, v in sorted(templates.items())})


# Time --------------------------------------------------------------------------------------------

def draw_tz(rng: np.random.Generator) -> float:
    weights = np.asarray(TZ_WEIGHTS) / sum(TZ_WEIGHTS)
    return float(TZ_OFFSETS[int(rng.choice(len(TZ_OFFSETS), p=weights))])


def kept_by_hour(rng: np.random.Generator, times: np.ndarray, tz: float) -> np.ndarray:
    """Thinning by the diurnal profile: a time is kept with probability HOURLY[local hour]."""
    hour = np.floor((times / 3600 + tz) % 24).astype(int)
    return times[rng.random(times.size) < HOURLY[hour]]


def diurnal_times(rng: np.random.Generator, n: int, window: tuple[float, float],
                  tz: float) -> np.ndarray:
    """n independent times over the window, denser in the local day."""
    found, need = [np.empty(0)], n
    while need > 0:
        kept = kept_by_hour(rng, window[0] + rng.uniform(0, window[1], 2 * need + 8), tz)[:need]
        found.append(kept)
        need -= kept.size
    return np.concatenate(found)


def careful_times(rng: np.random.Generator, start: float, n: int, tz: float,
                  per_minute: float) -> np.ndarray:
    """The first n arrivals after ``start`` of a Poisson process at ``per_minute`` at the local
    peak hour, thinned by the diurnal profile."""
    found, need, t = [np.empty(0)], n, start
    while need > 0:
        candidates = t + np.cumsum(rng.exponential(60 / per_minute, 2 * need + 8))
        t = candidates[-1]
        kept = kept_by_hour(rng, candidates, tz)[:need]
        found.append(kept)
        need -= kept.size
    return np.concatenate(found)


def burst_sizes(rng: np.random.Generator, n: int, mean: float) -> list[int]:
    sizes = []
    while n > 0:
        sizes.append(min(n, 1 + int(rng.poisson(mean - 1))))
        n -= sizes[-1]
    return sizes


def burst(rng: np.random.Generator, start: float, size: int, gap: float) -> np.ndarray:
    return start + np.concatenate(([0.0], np.cumsum(rng.exponential(gap, size - 1))))


def campaign_times(rng: np.random.Generator, cfg: TrafficConfig, n: int, pacing: str,
                   window: tuple[float, float], tz: float, per_minute: float, *,
                   mixed: bool = False, start: float | None = None) -> np.ndarray:
    """When a campaign's n requests are sent (the module docstring gives the pacings)."""
    sizes = burst_sizes(rng, n, cfg.burst_mean) if pacing == "fast" else []
    if mixed:
        if pacing == "careful":
            return np.sort(diurnal_times(rng, n, window, tz))
        starts = np.sort(diurnal_times(rng, len(sizes), window, tz))
        return np.sort(np.concatenate([burst(rng, s, k, cfg.burst_gap_s)
                                       for s, k in zip(starts, sizes)]))
    t = diurnal_times(rng, 1, window, tz)[0] if start is None else start
    if pacing == "careful":
        return careful_times(rng, t, n, tz, per_minute)
    out = []
    for k in sizes:
        out.append(burst(rng, t, k, cfg.burst_gap_s))
        t = out[-1][-1] + rng.exponential(cfg.burst_pause_s)
    return np.concatenate(out)


def think_offsets(rng: np.random.Generator, cfg: TrafficConfig, turns: int) -> np.ndarray:
    gaps = np.maximum(cfg.think_min_s,
                      rng.lognormal(math.log(cfg.think_median_s), cfg.think_sigma, turns - 1))
    return np.concatenate(([0.0], np.cumsum(gaps)))


def heavy_tail(rng: np.random.Generator, scale: float, cap: int) -> int:
    """1 + floor(scale * Lomax(2)), at most cap: mean about 1 + scale - 0.5."""
    return int(min(cap, 1 + math.floor(scale * rng.pareto(2.0))))


# Accounts ----------------------------------------------------------------------------------------

class Dealer:
    """Deals a part's conversations in a seeded order, a new order when it is used up (``passes``
    counts the orders begun); ``single_pass`` stops at the end instead. A conversation an
    account already holds is skipped, unless the account holds the whole part."""

    def __init__(self, pool: list[int], rng: np.random.Generator, single_pass: bool = False):
        self.pool = np.asarray(pool, dtype=np.int64)
        self.rng, self.single_pass = rng, single_pass
        self.order, self.pos, self.passes = np.empty(0, np.int64), 0, 0

    def take(self, k: int, held: set[int]) -> list[int]:
        out: list[int] = []
        skipped = 0
        while len(out) < k:
            if self.pos >= self.order.size:
                if (self.single_pass and self.passes) or not self.pool.size:
                    break
                self.order, self.pos = self.rng.permutation(self.pool), 0
                self.passes += 1
            c = int(self.order[self.pos])
            self.pos += 1
            if c in held and skipped < self.pool.size:
                skipped += 1
                continue
            held.add(c)
            out.append(c)
        return out

    def turns(self, n: int, held: set[int], lengths: list[int]) -> list[tuple[int, int]]:
        """Whole conversations until n turns are dealt, the last one cut short."""
        out = []
        while n > 0:
            got = self.take(1, held)
            if not got:
                break
            out.append((got[0], min(n, lengths[got[0]])))
            n -= out[-1][1]
        return out


class Plan:
    """The accounts, end users and requests of one log. A request is a row of ints: (ms,
    account, conversation or -1, turn or campaign prompt index, end user or -1), its text is
    made only when the line is written."""

    def __init__(self, cfg: TrafficConfig, sources: Sources, rng: np.random.Generator,
                 names: set[str]):
        self.cfg, self.sources, self.rng, self.names = cfg, sources, rng, names
        self.window = (parse_time(cfg.start), cfg.days * 86400.0)
        self.lengths = [len(c) for c in sources.conversations]
        self.accounts: list[dict] = []
        self.users: list[str] = []
        self.rows: list[tuple[int, int, int, int, int]] = []
        self.passes = 0

    def name(self, prefix: str, digits: int) -> str:
        while (name := prefix + self.rng.bytes(digits // 2).hex()) in self.names:
            pass
        self.names.add(name)
        return name

    def account(self, kind: str, **info) -> int:
        self.accounts.append({
            "name": self.name("acct-", 12), "kind": kind, "source": None, "share": 0.0,
            "level": None, "pacing": None, "group": None, "wrapper": None, "tz": None,
            "requests": 0, "campaign_requests": 0, "conversations": 0, "end_users": 0,
            "distinct_prompts": 0, "templates": [], **info})
        return len(self.accounts) - 1

    def user(self) -> int:
        self.users.append(self.name("user-", 10))
        return len(self.users) - 1

    def conversation(self, acct: int, conv: int, turns: int, start: float, user: int = -1):
        ms = np.round((start + think_offsets(self.rng, self.cfg, turns)) * 1000).astype(np.int64)
        self.rows.extend((int(m), acct, conv, k, user) for k, m in enumerate(ms))
        self.accounts[acct]["requests"] += turns
        self.accounts[acct]["conversations"] += 1

    def prompts(self, acct: int, times: np.ndarray, picks: list[int], templates: list[str]):
        self.rows.extend((round(t * 1000), acct, -1, p, -1) for t, p in zip(times, picks))
        entry = self.accounts[acct]
        entry["requests"] += len(picks)
        entry["campaign_requests"] += len(picks)
        entry["distinct_prompts"] = len(set(picks))
        entry["templates"] = templates


def add_individual(plan: Plan, dealer: Dealer) -> bool:
    """A benign individual; False when a single-pass part has nothing left to deal."""
    rng, cfg = plan.rng, plan.cfg
    convs = dealer.take(heavy_tail(rng, cfg.conversation_scale, cfg.max_conversations), set())
    if not convs:
        return False
    tz = draw_tz(rng)
    acct = plan.account("benign-individual", tz=tz)
    for c, start in zip(convs, diurnal_times(rng, len(convs), plan.window, tz)):
        plan.conversation(acct, c, plan.lengths[c], start)
    return True


def add_app(plan: Plan, dealer: Dealer, wrapper: str | None, budget: float) -> int:
    """A benign app relaying its end users' conversations; returns how many it used (at most
    ``budget``)."""
    rng, cfg = plan.rng, plan.cfg
    users = round(math.exp(rng.uniform(math.log(cfg.app_users[0]), math.log(cfg.app_users[1]))))
    acct = plan.account("benign-app", wrapper=wrapper)
    held: set[int] = set()
    used = 0
    for _ in range(users):
        want = min(heavy_tail(rng, cfg.end_user_conversation_scale, cfg.max_conversations),
                   budget - used)
        convs = dealer.take(int(want), held) if want >= 1 else []
        if not convs:
            break
        user, tz = plan.user(), draw_tz(rng)
        plan.accounts[acct]["end_users"] += 1
        for c, start in zip(convs, diurnal_times(rng, len(convs), plan.window, tz)):
            plan.conversation(acct, c, plan.lengths[c], start, user)
        used += len(convs)
    return used


def campaign_prompts(plan: Plan, source: str, n: int) -> tuple[list[int], list[str]]:
    """n prompt indices of one campaign, and the T0 templates it fills."""
    rng, chosen = plan.rng, []
    if source == "t0":
        names = list(plan.sources.templates)
        want = int(rng.integers(plan.cfg.t0_templates[0], plan.cfg.t0_templates[1] + 1))
        pool: list[int] = []
        for i in rng.permutation(len(names)):
            if len(chosen) >= want and len(pool) >= n:
                break
            chosen.append(names[i])
            pool.extend(plan.sources.templates[names[i]])
    else:
        pool = list(range(len(plan.sources.campaigns[source])))
    picks: list[int] = []
    while len(picks) < n and pool:
        picks.extend(int(p) for p in rng.permutation(pool)[:n - len(picks)])
    return picks, sorted(chosen)


def add_campaign(plan: Plan, dealer: Dealer, level: float, source: str, pacing: str) -> None:
    """A campaign account at one mixing level: campaign prompts plus benign cover traffic."""
    rng, cfg = plan.rng, plan.cfg
    total = cfg.level_requests[cfg.levels.index(level)]
    n_campaign = round(level * total)
    tz, per_minute = draw_tz(rng), float(rng.uniform(*cfg.careful_per_minute))
    acct = plan.account("campaign", source=source, level=level, pacing=pacing, tz=tz)
    picks, templates = campaign_prompts(plan, source, n_campaign)
    times = campaign_times(rng, cfg, len(picks), pacing, plan.window, tz, per_minute,
                           mixed=n_campaign < total)
    plan.prompts(acct, times, picks, templates)
    for c, turns in dealer.turns(total - n_campaign, set(), plan.lengths):
        plan.conversation(acct, c, turns, diurnal_times(rng, 1, plan.window, tz)[0])


def add_hydra(plan: Plan, size: int, source: str, pacing: str, group: str) -> None:
    """One campaign spread over ``size`` accounts with the same pacing, zone and start."""
    rng, cfg = plan.rng, plan.cfg
    counts = rng.integers(cfg.hydra_requests[0], cfg.hydra_requests[1] + 1, size)
    picks, templates = campaign_prompts(plan, source, int(counts.sum()))
    tz, per_minute = draw_tz(rng), float(rng.uniform(*cfg.careful_per_minute))
    start = diurnal_times(rng, 1, plan.window, tz)[0]
    offset = 0
    for count in counts.tolist():
        acct = plan.account("hydra", source=source, level=1.0, pacing=pacing, tz=tz, group=group)
        mine = picks[offset:offset + count]
        offset += count
        times = campaign_times(rng, cfg, len(mine), pacing, plan.window, tz, per_minute,
                               start=start + rng.uniform(0, cfg.hydra_start_jitter_s))
        plan.prompts(acct, times, mine, templates)


def evaluation_plan(plan: Plan, pool: list[int]) -> None:
    """The log to score: individuals, apps, campaign accounts per (level, source, pacing) cell,
    hydra groups, in that order of dealing."""
    cfg = plan.cfg
    dealer = Dealer(pool, plan.rng)
    for _ in range(cfg.individuals):
        add_individual(plan, dealer)
    names = list(APP_WRAPPERS)
    for i in range(cfg.apps):
        add_app(plan, dealer, names[i % len(names)] if i < cfg.wrapped_apps else None, math.inf)
    for level in cfg.levels:
        for source in cfg.sources:
            for pacing in cfg.pacings:
                for _ in range(cfg.accounts_per_cell):
                    add_campaign(plan, dealer, level, source, pacing)
    number = 0
    for size, source, count in cfg.hydra:
        for j in range(count):
            number += 1
            add_hydra(plan, size, source, cfg.pacings[j % len(cfg.pacings)], f"hydra-{number:03d}")
    plan.passes = dealer.passes


def benign_plan(plan: Plan, pool: list[int]) -> None:
    """A benign-only log from one part, each conversation once: unwrapped apps (together at
    most ``log_app_share`` of the part), then individuals until the part is used. With
    ``log_conversations``, only that many of the part's first conversations are used."""
    if plan.cfg.log_conversations:
        pool = pool[:plan.cfg.log_conversations]
    dealer = Dealer(pool, plan.rng, single_pass=True)
    budget = int(plan.cfg.log_app_share * len(pool))
    for _ in range(plan.cfg.log_apps):
        budget -= add_app(plan, dealer, None, budget)
    while add_individual(plan, dealer):
        pass
    plan.passes = dealer.passes


# Output ------------------------------------------------------------------------------------------

def request_line(row: list[int], rid: int, plan: Plan) -> dict:
    ms, acct, conv, index, user = row
    account = plan.accounts[acct]
    if conv < 0:
        messages = [{"role": "user", "content": plan.sources.campaigns[account["source"]][index]}]
    else:
        wrapper = APP_WRAPPERS.get(account["wrapper"] or "")
        messages = [{"role": "system", "content": wrapper.system}] if wrapper else []
        for k, text in enumerate(plan.sources.conversations[conv][:index + 1]):
            if k:
                messages.append({"role": "assistant", "content": EARLIER_ANSWER})
            messages.append({"role": "user", "content": wrapper.apply(text) if wrapper else text})
    return {"id": f"req-{rid:016x}", "timestamp": format_ms(ms), "account": account["name"],
            "request": {"model": MODEL, "user": plan.users[user] if user >= 0 else account["name"],
                        "messages": messages}}


def write_log(path: Path, plan: Plan) -> int:
    """Stream the plan's requests to a gzip file (fixed header, so a seed gives the same bytes)
    in timestamp order jittered by U(-2.5 s, 2.5 s); moved into place when complete."""
    rows = np.asarray(plan.rows, dtype=np.int64).reshape(-1, 5)
    plan.rows = []
    order = np.argsort(rows[:, 0] + plan.rng.uniform(-2500, 2500, len(rows)), kind="stable")
    ids = plan.rng.integers(0, 2 ** 63, len(rows))
    while np.unique(ids).size < ids.size:
        ids = plan.rng.integers(0, 2 ** 63, len(rows))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                   mtime=0, compresslevel=6) as gz:
            batch: list[str] = []
            for rid, row in zip(ids.tolist(), rows[order].tolist()):
                batch.append(json.dumps(request_line(row, rid, plan), ensure_ascii=False))
                if len(batch) >= 2000:
                    gz.write(("\n".join(batch) + "\n").encode("utf-8"))
                    batch = []
            gz.write("".join(line + "\n" for line in batch).encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


LOGS = (("requests", "requests.jsonl.gz"), ("baseline", "baseline.jsonl.gz"),
        ("calibration", "calibration.jsonl.gz"))
TRUTH_FORMAT = "monitor-traffic/1"


def truth_of(cfg: TrafficConfig, plans: dict[str, Plan], parts: dict[str, list[int]],
             sizes: dict[str, int]) -> dict:
    """What truth.json holds: every scored account's kind, source, share and group, the hydra
    groups, the benign logs' accounts, and how the parts were used."""
    accounts = {}
    groups: dict[str, dict] = {}
    for a in plans["requests"].accounts:
        entry = {k: v for k, v in a.items() if k != "name"}
        entry["share"] = round(a["campaign_requests"] / a["requests"], 6) if a["requests"] else 0.0
        accounts[a["name"]] = entry
        if a["group"]:
            g = groups.setdefault(a["group"], {"source": a["source"], "pacing": a["pacing"],
                                               "accounts": [], "requests": 0})
            g["accounts"].append(a["name"])
            g["requests"] += a["requests"]
    return {
        "format": TRUTH_FORMAT, "config": dataclasses.asdict(cfg),
        "logs": {log: {"file": file, "requests": sizes[log], "accounts": len(plans[log].accounts),
                       "part": "evaluation" if log == "requests" else log,
                       "passes": plans[log].passes} for log, file in LOGS},
        "split": {part: len(ids) for part, ids in parts.items()},
        "accounts": accounts, "groups": groups,
        "benign_logs": {log: {a["name"]: a["kind"] for a in plans[log].accounts}
                        for log, _ in LOGS[1:]}}


def row_label(entry: dict, groups: dict) -> str:
    if entry["kind"] == "campaign":
        return f"campaign {entry['level'] * 100:g}%"
    if entry["kind"] == "hydra":
        return f"hydra G={len(groups[entry['group']]['accounts'])}"
    return entry["kind"]


def summary_of(truth: dict, out: Path, seconds: float) -> dict:
    """Counts per kind (campaigns by level, hydra groups by size) and per log."""
    kinds: dict[str, dict] = {}
    for entry in truth["accounts"].values():
        row = kinds.setdefault(row_label(entry, truth["groups"]),
                               {"accounts": 0, "requests": 0, "campaign_requests": 0})
        row["accounts"] += 1
        row["requests"] += entry["requests"]
        row["campaign_requests"] += entry["campaign_requests"]
    logs = {log: {**info, "bytes": (out / info["file"]).stat().st_size}
            for log, info in truth["logs"].items()}
    return {"seed": truth["config"]["seed"], "scale": truth["config"]["scale"], "out": str(out),
            "seconds": round(seconds, 1), "logs": logs, "split": truth["split"],
            "groups": len(truth["groups"]), "kinds": kinds}


def table(summary: dict) -> str:
    """The summary as a Markdown table: one row per kind, then the benign logs."""
    lines = ["| kind | accounts | requests | campaign requests |", "|---|---|---|---|"]
    for label, row in summary["kinds"].items():
        lines.append(f"| {label} | {row['accounts']:,} | {row['requests']:,} | "
                     f"{row['campaign_requests']:,} |")
    for log, info in summary["logs"].items():
        lines.append(f"| all of {info['file']} | {info['accounts']:,} | {info['requests']:,} | "
                     f"{'-' if log != 'requests' else ''} |")
    return "\n".join(lines)


def build(config: TrafficConfig, out: str | os.PathLike[str],
          sources: Sources | None = None) -> dict:
    """Write the three logs and truth.json into ``out``; returns the summary. One generator
    per log (seeded ``[seed, log number]``), so each log depends on the seed alone."""
    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = sources if sources is not None else load_sources()
    parts = split_conversations(sources.conversation_ids, config.split)
    names: set[str] = set()
    plans, sizes = {}, {}
    for number, (log, file) in enumerate(LOGS):
        plan = Plan(config, sources, np.random.default_rng([config.seed, number]), names)
        if log == "requests":
            evaluation_plan(plan, parts["evaluation"])
        else:
            benign_plan(plan, parts[log])
        sizes[log] = write_log(out / file, plan)
        plans[log] = plan
    truth = truth_of(config, plans, parts, sizes)
    atomic_write_bytes(out / "truth.json", json.dumps(truth, indent=1).encode("utf-8"))
    return summary_of(truth, out, time.time() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory for the logs and truth.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", choices=("small", "full"), default="full")
    parser.add_argument("--data", default=str(DATA / "monitor"),
                        help="the monitor data folder (benign/, campaigns/)")
    parser.add_argument("--alpacaeval", default=str(DATA / "alpacaeval" / "prompts.jsonl"),
                        help="AlpacaEval prompts (field instruction)")
    args = parser.parse_args(argv)
    try:
        config = TrafficConfig.preset(args.scale, args.seed)
        summary = build(config, args.out, load_sources(args.data, args.alpacaeval))
    except (ConfigError, InputError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
