"""Scale-out on Ray: build and extend an index with a cluster of workers, committed once.

``add_files_on_ray`` and ``build_index_on_ray`` do what index.add_files and index.build_index do
(same records skipped, same errors, same stored rows), with the reading and fingerprinting on a
Ray cluster and one commit on the driver (distributed.engine tells how). Ray is an optional
extra (``pip install 'output-fingerprint[ray]'``); this package imports it only when called.
"""

from distributed.engine import (DEFAULT_RETRIES, RAY_HINT, add_files_on_ray, build_index_on_ray)
from distributed.errors import EngineError, EngineNotInstalledError

__all__ = [
           "DEFAULT_RETRIES",
           "RAY_HINT",
           "EngineError",
           "EngineNotInstalledError",
           "add_files_on_ray",
           "build_index_on_ray",
]
