"""The benign baseline: what benign accounts look like, fitted once from benign traffic.

Fitting splits the benign log's accounts in two by a seeded hash of their ids. Half A gives the
benign mean of the random Fourier features (what an account's prompts are compared with) and the
median distance that sets the kernels' bandwidths. The null distributions come from null
accounts made by concatenating benign accounts (each kept whole and in time order, so its
conversations, follow-ups and repetitions are as they were) in a random order, without
replacement; each statistic of monitor.detector is measured on them at every checkpoint. The
``shift`` null is made from half B alone, so that its null accounts are scored against a mean
they took no part in, as a new account is. ``reuse`` and ``single_turn`` depend on nothing
fitted, so their nulls are made from all the benign accounts, A and B.

A signal is tested at a checkpoint only if the accounts its null is made from hold at least
``MIN_NULL_COVERAGE`` times the checkpoint's size in requests: with fewer, the simulated null
accounts would share most of their requests and their spread would understate a fresh benign
account's. So a baseline may test ``reuse`` and ``single_turn`` at one checkpoint more than
``shift`` (twice the requests). A signal's null column is NaN where it is not tested, and a
checkpoint where no signal is tested is listed as untested.

On disk a baseline is a directory: ``manifest.json`` (format and toolkit versions, the full
MonitorConfig, the median, counts, which checkpoints are tested, the sha256 of every array) and
``mean.npy``, ``null_shift.npy``, ``null_reuse.npy``, ``null_single_turn.npy``. Written
atomically; loading verifies every checksum and refuses another format, and a caller's config
that differs names each difference.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fingerprint import __version__
from fingerprint.atomic import atomic_write_bytes, fsync_path
from fingerprint.records import FieldMap
from monitor.config import MonitorConfig
from monitor.detector import AccountState, conversation_key, count_turn, is_reuse, remember
from monitor.errors import BaselineError
from monitor.features import PromptFeatures
from monitor.requests import Request, RequestStats, read_requests, requests_by_account
from monitor.skeleton import stripped

BASELINE_FORMAT = 3  # 3: reuse and single_turn nulls from all accounts, tested per signal;
# 2: single_turn (openings not continued) replaces openings
MIN_NULL_COVERAGE = 10
ARRAYS = ("mean", "null_shift", "null_reuse", "null_single_turn")


@dataclass(frozen=True)
class Baseline:
    """The benign mean and, per tested checkpoint, the sorted null values of each statistic."""

    config: MonitorConfig
    median: float
    mean: np.ndarray  # (dim,) float64
    null_shift: np.ndarray  # (null_accounts, checkpoints) float64, each column sorted
    null_reuse: np.ndarray
    null_single_turn: np.ndarray  # all NaN when the benign log does not show conversations
    tested: tuple[bool, ...]  # per checkpoint: enough benign traffic to calibrate a signal
    counts: dict[str, int]

    def features(self) -> PromptFeatures:
        return PromptFeatures(self.config, self.median)

    def signals_at(self, k: int) -> tuple[str, ...]:
        """The signals calibrated at checkpoint k (their null is not NaN there)."""
        nulls = (("shift", self.null_shift), ("reuse", self.null_reuse),
                 ("single_turn", self.null_single_turn))
        return tuple(name for name, null in nulls if not np.isnan(null[:, k]).any())

    def save(self, directory: str | os.PathLike[str]) -> None:
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        digests = {}
        for name in ARRAYS:
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
            data = buffer.getvalue()
            atomic_write_bytes(root / f"{name}.npy", data)
            digests[name] = hashlib.sha256(data).hexdigest()
        manifest = {"format": BASELINE_FORMAT, "toolkit_version": __version__,
                    "config": self.config.to_dict(), "median": self.median,
                    "tested": list(self.tested), "counts": dict(self.counts),
                    "sha256": digests}
        atomic_write_bytes(root / "manifest.json",
                           (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        fsync_path(root)

    @classmethod
    def load(cls, directory: str | os.PathLike[str],
             config: MonitorConfig | None = None) -> "Baseline":
        """A saved baseline, every array checked against its sha256; ``config``, if given, must
        be the baseline's."""
        root = Path(directory)
        manifest = _read_manifest(root)
        try:
            saved = MonitorConfig.from_dict(manifest["config"])
        except (TypeError, ValueError) as exc:
            raise BaselineError(f"{root / 'manifest.json'}: config is not valid ({exc})") from None
        if config is not None and config != saved:
            raise BaselineError(f"{root}: baseline fitted with another config: "
                                + "; ".join(saved.differences(config)))
        arrays = {name: _read_array(root, name, manifest["sha256"].get(name)) for name in ARRAYS}
        return cls(saved, float(manifest["median"]), arrays["mean"], arrays["null_shift"],
                   arrays["null_reuse"], arrays["null_single_turn"],
                   tuple(bool(t) for t in manifest["tested"]), dict(manifest["counts"]))


def fit_baseline(requests: Iterable[Request], config: MonitorConfig = MonitorConfig(),
                 features: PromptFeatures | None = None) -> Baseline:
    """Fit a baseline from benign traffic (the whole log is held in memory: a few hundred bytes
    a request)."""
    accounts = requests_by_account(requests)
    half_a, half_b = _split(accounts, config.seed)
    if not half_a or not half_b:
        raise BaselineError(f"a baseline needs benign traffic from at least two accounts; got "
                            f"{len(accounts)}")
    features = features or PromptFeatures(config)
    prompts_a = [stripped([r.prompt for r in accounts[a]]) for a in half_a]
    embedded_a = features.embed([p for prompts in prompts_a for p in prompts])
    median = features.fit_scale(embedded_a)
    mean = features.rff(embedded_a).astype(np.float64).mean(axis=0)
    # half A's accounts reuse these rows: each prompt is embedded once
    ends = np.cumsum([len(prompts) for prompts in prompts_a])
    reused = dict(zip(half_a, np.split(embedded_a, ends[:-1])))
    units = {a: _unit(features, config, accounts[a], reused.get(a)) for a in sorted(accounts)}
    b_units = [units[a] for a in half_b]
    total_b = sum(len(flags) for _, flags in b_units)
    total = sum(len(flags) for _, flags in units.values())
    shift_tested = _covered(config, total_b)
    counts_tested = _covered(config, total)
    null_shift, _ = _null_statistics(b_units, mean, config, shift_tested)
    _, null_shares = _null_statistics(list(units.values()), mean, config, counts_tested)
    tested = tuple(a or b for a, b in zip(shift_tested, counts_tested))
    shows_turns = all(r.prior_turns is not None and (r.prior_turns == 0 or r.conversation
                                                     is not None)
                      for reqs in accounts.values() for r in reqs)
    null_single_turn = null_shares[1] if shows_turns else np.full_like(null_shift, np.nan)
    counts = {"accounts": len(accounts), "requests": sum(len(v) for v in accounts.values()),
              "mean_accounts": len(half_a), "mean_requests": int(len(embedded_a)),
              "null_accounts_from": len(half_b), "null_requests_from": int(total_b),
              "count_null_accounts_from": len(units), "count_null_requests_from": int(total)}
    return Baseline(config, median, mean, null_shift, null_shares[0], null_single_turn, tested,
                    counts)


def build_baseline(log: str | os.PathLike[str], out: str | os.PathLike[str],
                   config: MonitorConfig = MonitorConfig(), fields: FieldMap = FieldMap(), *,
                   force: bool = False) -> tuple[Baseline, RequestStats]:
    """What ``fingerprint monitor baseline build`` does: fit a baseline on the benign log and
    save it in ``out``; returns it with what was read and skipped. An existing baseline is
    replaced only with ``force``, and that is checked before the (long) fit."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise BaselineError(f"{root}: exists and is not a directory")
    if (root / "manifest.json").exists() and not force:
        raise BaselineError(f"{root}: already holds a baseline; --force replaces it")
    stats = RequestStats()
    baseline = fit_baseline(read_requests(log, fields, stats), config)
    baseline.save(root)
    return baseline, stats


def _covered(config: MonitorConfig, requests: int) -> tuple[bool, ...]:
    """Per checkpoint, whether a null made from ``requests`` benign requests can calibrate it."""
    return tuple(size * MIN_NULL_COVERAGE <= requests for size in config.checkpoint_sizes)


def _split(accounts: dict[str, list[Request]], seed: int) -> tuple[list[str], list[str]]:
    def half(account: str) -> int:
        return hashlib.sha256(f"{seed}:{account}".encode()).digest()[0] & 1
    names = sorted(accounts)
    return [a for a in names if half(a) == 0], [a for a in names if half(a) == 1]


def _unit(features: PromptFeatures, config: MonitorConfig, requests: list[Request],
          embedded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One benign account as the detector would see it: its RFF rows, and per request whether
    it reuses a recent prompt (column 0) and how it changes the count of openings not continued
    (column 1: +1 for an opening, -1 for the follow-up that continues one, as
    monitor.detector.count_turn counts them), so a prefix sum is the count at that request.
    Each account starts with no remembered openings: a null account's units are separate
    accounts, so one cannot continue another's conversation. ``embedded``: its stripped
    prompts' embeddings, when already made."""
    prompts = stripped([r.prompt for r in requests])
    if embedded is None:
        embedded = features.embed(prompts)
    rff, signatures = features.rff(embedded), features.signatures(prompts)
    state = AccountState.new(config, rff.shape[1])
    flags = np.zeros((len(prompts), 2), dtype=np.float64)
    for i, (signature, request) in enumerate(zip(signatures, requests)):
        flags[i, 0] = is_reuse(state.recent, state.recent_count, signature,
                               config.reuse_jaccard)
        remember(state, signature)
        before = state.single_turn
        key = request.conversation
        if key is None and request.prior_turns == 0:  # as AccountScorer.score keys an opening
            key = conversation_key(request.prompt)
        count_turn(state, request.prior_turns, key)
        flags[i, 1] = state.single_turn - before
    return rff.astype(np.float64), flags


def _null_statistics(units: list[tuple[np.ndarray, np.ndarray]], mean: np.ndarray,
                     config: MonitorConfig, tested: tuple[bool, ...]
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The shift, and each flag column's share, on ``null_accounts`` simulated benign accounts
    at every checkpoint (NaN where a checkpoint is untested), each column sorted.

    A null account is half B's accounts, whole and in a random order (without replacement),
    cut at each checkpoint's size. Only sums are needed, so each unit's prefix sums are made
    once and a null account costs a cumulative sum over the units it uses."""
    width = units[0][1].shape[1] if units else 0
    shift = np.full((config.null_accounts, config.checkpoints), np.nan)
    shares = [np.full_like(shift, np.nan) for _ in range(width)]
    columns = [k for k, ok in enumerate(tested) if ok]
    if not columns:
        return shift, shares
    sizes = np.array([config.checkpoint_sizes[k] for k in columns])
    prefix = [(np.cumsum(rff, axis=0), np.cumsum(flags, axis=0)) for rff, flags in units]
    totals = np.array([p[0][-1] for p in prefix])
    flag_totals = np.array([p[1][-1] for p in prefix])
    lengths = np.array([len(flags) for _, flags in units])
    rng = np.random.default_rng(config.seed + 2)
    for b in range(config.null_accounts):
        order = rng.permutation(len(units))
        ends = np.cumsum(lengths[order])
        last = np.searchsorted(ends, sizes)  # the unit each checkpoint ends in
        used = order[:last.max() + 1]
        before_rff = np.vstack([np.zeros_like(mean), np.cumsum(totals[used], axis=0)])
        before_flags = np.vstack([np.zeros(width), np.cumsum(flag_totals[used], axis=0)])
        starts = np.concatenate([[0], ends])[last]
        for column, size, j, start in zip(columns, sizes, last, starts):
            rows, flags = prefix[order[j]]
            shift[b, column] = np.sum(((before_rff[j] + rows[size - start - 1]) / size
                                       - mean) ** 2)
            counted = (before_flags[j] + flags[size - start - 1]) / size
            for f in range(width):
                shares[f][b, column] = counted[f]
    shift[:, columns] = np.sort(shift[:, columns], axis=0)
    for share in shares:
        share[:, columns] = np.sort(share[:, columns], axis=0)
    return shift, shares


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"{root}: no baseline here (no manifest.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{path}: not a readable baseline manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BASELINE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BaselineError(f"{path}: baseline format {found!r}; this toolkit reads format "
                            f"{BASELINE_FORMAT}")
    for key in ("config", "median", "tested", "counts", "sha256"):
        if key not in manifest:
            raise BaselineError(f"{path}: field {key!r} is missing")
    return manifest


def _read_array(root: Path, name: str, digest: str | None) -> np.ndarray:
    path = root / f"{name}.npy"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise BaselineError(f"{path}: checksum does not match the manifest (damaged or edited)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise BaselineError(f"{path}: not a valid array ({exc})") from None
