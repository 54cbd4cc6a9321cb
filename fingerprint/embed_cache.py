"""A cache of artefacts derived from an embedding model (an int8 ONNX graph, a static table).

Deriving them takes seconds to a minute, so it happens once per machine, not per process; but a
cached file decides every embedding the toolkit stores, so it is never trusted blindly:

- an entry's key is the sha256 of the recipe (name and version) and of every model file's
  content, so a changed model or recipe gets a new entry instead of a stale one;
- each file is written to a temporary name and moved into place with ``os.replace``, and the
  entry's ``entry.json`` (sha256 and size of every file) last, so a crash leaves no half entry
  that looks whole;
- every load checks the files against ``entry.json``; a missing, truncated or altered file is
  logged and the entry rebuilt;
- builders are serialised with ``flock``, so two processes do not build the same entry at once.

Nothing is pickled: entries hold ``.onnx``, ``.npy`` and ``.json`` files only. The root is
``$FINGERPRINT_CACHE_DIR``, else ``~/.cache/fingerprint``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from fingerprint.atomic import fsync_path
from fingerprint.checksum import file_sha256
from fingerprint.errors import EmbeddingCacheError

CACHE_ENV = "FINGERPRINT_CACHE_DIR"
ENTRY_FILE = "entry.json"

log = logging.getLogger(__name__)
_model_digests: dict[tuple, str] = {}


def cache_root() -> Path:
    """The cache directory in force: ``$FINGERPRINT_CACHE_DIR``, else ~/.cache/fingerprint.
    Asked on every embedding call (fingerprint.embed keys its loaded backends by it), so the
    path is worked out once per (setting, home directory): building it cost ~30 us a call."""
    return _cache_root(os.environ.get(CACHE_ENV), os.environ.get("HOME"))


@functools.lru_cache(maxsize=16)
def _cache_root(configured: str | None, home: str | None) -> Path:
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fingerprint"


def model_digest(model_dir: Path) -> str:
    """sha256 over every model file's relative path and content (hidden files aside).

    Content, not modification times: reinstalling the same model must not rebuild. Hashing the
    ~90 MB model costs a fraction of a second and is done once per process.
    """
    files = sorted(p for p in model_dir.rglob("*")
                   if p.is_file() and not any(part.startswith(".")
                                              for part in p.relative_to(model_dir).parts))
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _model_digests:
        digest = hashlib.sha256()
        for p in files:
            digest.update(str(p.relative_to(model_dir)).encode("utf-8") + b"\0")
            digest.update(file_sha256(p).encode("ascii") + b"\n")
        _model_digests[stamp] = digest.hexdigest()
    return _model_digests[stamp]


def entry_key(recipe: str, recipe_version: int, model_sha256: str) -> str:
    text = json.dumps({"recipe": recipe, "version": recipe_version, "model": model_sha256},
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def verify(entry: Path, files: tuple[str, ...]) -> tuple[dict | None, str]:
    """(the entry's record, "") if every file matches it, else (None, why not)."""
    try:
        record = json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))
        listed = record["files"]
    except FileNotFoundError:
        return None, "no entry"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{ENTRY_FILE} unreadable ({exc})"
    if not isinstance(listed, dict) or sorted(listed) != sorted(files):
        return None, f"{ENTRY_FILE} lists {listed!r}, expected {sorted(files)}"
    for name in files:
        path = entry / name
        if not path.is_file():
            return None, f"{name} missing"
        if path.stat().st_size != listed[name].get("size"):
            return None, f"{name}: size {path.stat().st_size}, recorded {listed[name].get('size')}"
        actual = file_sha256(path)
        if actual != listed[name].get("sha256"):
            return None, f"{name}: sha256 {actual}, recorded {listed[name].get('sha256')}"
    return record, ""


def load_or_build(recipe: str, recipe_version: int, model_dir: Path, files: tuple[str, ...],
                  build: Callable[[Path], dict], what: str = "",
                  about_seconds: float | None = None) -> tuple[Path, dict]:
    """The verified entry for (recipe, model), built first if missing or damaged.

    ``build(tmp_dir)`` writes ``files`` into ``tmp_dir`` and returns facts worth recording
    (parameters, checks); it runs at most once per entry at a time across processes.
    Returns the entry directory and its record (``entry.json``). A build is announced at INFO
    (``what`` is built, ``about_seconds`` it usually takes) and its time logged when done: it
    happens on a first use, inside a command whose progress bar would otherwise sit at 0% for
    up to minutes, which looks like a hang.
    """
    model_sha = model_digest(model_dir)
    root = cache_root()
    entry = root / f"{recipe}-{entry_key(recipe, recipe_version, model_sha)}"
    record, _ = verify(entry, files)
    if record is not None:
        log.debug("using the %s cache %s", what or recipe, entry)
        return entry, record
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{entry.name}.lock", "a")
    except OSError as exc:
        raise EmbeddingCacheError(f"cannot use the embedding cache {root}: {exc.strerror or exc}"
                                  f" (set {CACHE_ENV} to a writable directory)") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record, why = verify(entry, files)  # another process may have built it meanwhile
        if record is not None:
            return entry, record
        if why != "no entry":
            log.warning("embedding cache entry %s failed verification (%s); rebuilding", entry, why)
        for debris in root.glob(f".tmp-{entry.name}-*"):  # a killed builder's; we hold the lock
            shutil.rmtree(debris, ignore_errors=True)
        expected = f", about {about_seconds:.0f} s" if about_seconds else ""
        log.info("building the %s cache in %s (first use%s)", what or recipe, entry, expected)
        record = _build(recipe, recipe_version, model_dir, model_sha, entry, files, build)
    log.info("done in %.1f s: the %s cache is built", record["build_seconds"], what or recipe)
    return entry, record


def _build(recipe: str, recipe_version: int, model_dir: Path, model_sha: str, entry: Path,
           files: tuple[str, ...], build: Callable[[Path], dict]) -> dict:
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    try:
        facts = build(tmp)
        listed = {}
        for name in files:
            if not (tmp / name).is_file():
                raise EmbeddingCacheError(f"building {recipe} did not produce {name}")
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
            listed[name] = {"sha256": file_sha256(tmp / name), "size": (tmp / name).stat().st_size}
        record = {"recipe": recipe, "recipe_version": recipe_version, "model_dir": str(model_dir),
                  "model_sha256": model_sha, "files": listed,
                  "build_seconds": round(time.perf_counter() - started, 2),
                  "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **facts}
        entry.mkdir(exist_ok=True)
        (entry / ENTRY_FILE).unlink(missing_ok=True)  # the entry is invalid until rewritten
        for name in files:
            os.replace(tmp / name, entry / name)
        with open(tmp / ENTRY_FILE, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp / ENTRY_FILE, entry / ENTRY_FILE)
        fsync_path(entry)  # the renames themselves must survive a crash
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    checked, why = verify(entry, files)
    if checked is None:
        raise EmbeddingCacheError(f"embedding cache entry {entry} does not verify after "
                                  f"building it: {why}")
    return checked
