"""Errors of sharing (all derive from FingerprintError).

One class per refusal reason, because a recipient acts differently on each: an unknown signer
asks for a partner's public key, a bad signature or a changed byte for a new copy from a channel
that does not alter files, an expired bundle for a fresh export, a consortium key id the
recipient does not hold for the key exchange. The CLI prints the message as one line.
"""

from __future__ import annotations

from fingerprint.errors import FingerprintError


class SharingError(FingerprintError):
    """Base class of every error sharing raises on purpose."""


class SharingDependencyError(SharingError):
    """An optional package sharing needs (cryptography, stix2) is not installed; the message
    gives the one-line install."""


class KeyFileError(SharingError):
    """A key file cannot be written (it exists: keys are never overwritten) or read (missing,
    not a key of the expected kind, damaged)."""


class ConsortiumKeyError(KeyFileError):
    """A consortium key file is not one (wrong fields, a secret that is not 32 bytes of hex, or
    a key id that does not match its secret)."""


class TrustStoreError(SharingError):
    """The trust directory is missing, holds no .pub file, or holds one that is malformed."""


class ExportError(SharingError):
    """An export cannot run as asked: an index that stores no text, a selection it does not
    understand, a validity that is not a positive number of days, nothing to export."""


class BundleError(SharingError):
    """The file is not a bundle, or a damaged one (truncated, not a zip, a part missing)."""


class UnsafePathError(BundleError):
    """A name in the bundle would write outside the import directory (zip slip: '..', an
    absolute path, a separator) or is not one of the parts the format defines."""


class SchemaVersionError(BundleError):
    """The bundle's schema version is newer than this version of fingerprint reads."""


class UntrustedSignerError(BundleError):
    """The bundle is signed by a key that is in no .pub file of the trust directory."""


class SignatureError(BundleError):
    """The manifest's Ed25519 signature does not verify: the manifest was changed after
    signing, or signed with another key than the one it names."""


class PartChecksumError(BundleError):
    """A part's bytes do not have the sha256 the signed manifest gives: changed in transit."""


class ExpiredBundleError(BundleError):
    """The bundle's validity has ended (valid_until in the past)."""


class NotYetValidError(BundleError):
    """The bundle's validity has not begun (valid_from in the future)."""


class ConsortiumMismatchError(BundleError):
    """The bundle's signatures are keyed with a consortium key the recipient does not hold, so
    they cannot be compared with anything the recipient computes."""


class StyleConfigError(BundleError):
    """A bundle's style profile was made with another style configuration (style version,
    buckets, prompt normaliser) than the recipient's index, or its arrays do not form the
    matrix its manifest states: its rows cannot be compared."""


class ImportStoreError(SharingError):
    """The import directory cannot be used (a file where a directory should be)."""


class FeedbackError(SharingError):
    """An opinion cannot be written (a signal id the bundle does not hold, an unknown opinion)
    or a feedback file is refused: not one, signed by a reviewer not in the trust directory, a
    signature that does not verify (a field changed after signing), or about another bundle."""


class OwnBundleError(SharingError):
    """The bundle to import was signed by the importer's own key or org: imported, the
    importer's own outputs would count as a partner's evidence."""
