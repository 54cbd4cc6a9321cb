"""Reference packs: reference models' answers gathered once (``probe run`` against open models),
each with its facts (era, base model, vendor), installed into indexes so the null population grows
and can be matched to a suspect. ``add_to_pack`` and ``read_pack``/``verify_pack`` (pack),
``install_pack`` (install)."""

from reference_pack.errors import PackCorruptedError, PackEntryError, ReferencePackError
from reference_pack.install import SOURCE_KEY, Installed, install_pack
from reference_pack.pack import (PACK_FILE, Pack, PackEntry, add_to_pack, read_pack,
                                 verify_pack)

__all__ = [
    "Installed", "PACK_FILE", "Pack", "PackCorruptedError", "PackEntry", "PackEntryError",
    "ReferencePackError", "SOURCE_KEY", "add_to_pack", "install_pack", "read_pack",
    "verify_pack",
]
