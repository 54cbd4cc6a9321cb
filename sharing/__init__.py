"""Sharing distillation signals between providers (issue 16, in progress): signed, expiring,
privacy-keyed bundles, verified before use.

A producer exports keyed MinHash signatures of selected served responses (keyed by the
consortium secret partners agree on, so nobody without it can test a guessed text) and the
accounts its monitor flagged (STIX 2.1 indicators on keyed account hashes), in one zip signed
with its Ed25519 key (sharing.bundle). A recipient verifies signer, signature, every part's
checksum, validity period, schema and consortium key before importing it all or nothing.
A bundle may also carry the provider's style profile (sharing.profile); imported bundles join
``fingerprint attribute --bundle`` as partners' providers and near-duplicate checks
(sharing.use).
A capability beside probing, replay, reports and monitor: imports fingerprint and index only.
Needs the ``share`` extra (cryptography, stix2); without it each entry point says how to
install it.
"""

from sharing.bundle import (FORMAT, SCHEMA_VERSION, Bundle, read_bundle, read_imported,
                            write_bundle)
from sharing.errors import (BundleError, ConsortiumKeyError, ConsortiumMismatchError,
                            ExpiredBundleError, ExportError, FeedbackError, ImportStoreError,
                            KeyFileError, NotYetValidError, OwnBundleError, PartChecksumError,
                            SchemaVersionError,
                            SharingDependencyError, SharingError, SignatureError,
                            StyleConfigError, TrustStoreError, UnsafePathError,
                            UntrustedSignerError)
from sharing.export import ExportResult, export_bundle
from sharing.feedback import (OPINIONS, Opinion, read_feedback, summarize_feedback,
                              write_feedback)
from sharing.keyed import KeyedMinHasher, account_hash
from sharing.prompts import match_prompts, prompt_key
from sharing.keys import (ConsortiumKey, PublicKey, SigningKey, generate_consortium_key,
                          generate_signing_key, load_consortium_key, load_signing_key,
                          read_trust_dir)
from sharing.store import ImportResult, import_bundle, verify_bundle
from sharing.use import BundlePartner, attribute_with_bundles, load_partners

__all__ = [
    "FORMAT", "SCHEMA_VERSION", "Bundle", "BundleError", "ConsortiumKey", "ConsortiumKeyError",
    "ConsortiumMismatchError", "ExpiredBundleError", "ExportError", "ExportResult",
    "FeedbackError", "OPINIONS", "Opinion", "OwnBundleError", "read_feedback",
    "summarize_feedback", "write_feedback", "match_prompts", "prompt_key",
    "ImportResult", "ImportStoreError", "KeyFileError", "KeyedMinHasher", "NotYetValidError",
    "PartChecksumError", "PublicKey", "SchemaVersionError", "SharingDependencyError",
    "SharingError", "SignatureError", "SigningKey", "TrustStoreError", "UnsafePathError",
    "UntrustedSignerError", "account_hash", "export_bundle", "generate_consortium_key",
    "generate_signing_key", "import_bundle", "load_consortium_key", "load_signing_key",
    "read_bundle", "read_trust_dir", "verify_bundle", "write_bundle",
    "BundlePartner", "StyleConfigError", "attribute_with_bundles", "load_partners",
    "read_imported",
]
