"""Property test: whatever is stored comes back unchanged after the index is reopened."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fingerprint import ResponseRecord
from index import append_records, create_index, open_index

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80).filter(
    lambda s: s.strip())
optional = st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
record = st.builds(lambda response, prompt, model, account: dict(
    response=response, prompt=prompt, model=model, account=account),
    text, optional, optional, optional)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(record, min_size=1, max_size=5), min_size=1, max_size=3),
       store_text=st.booleans())
def test_save_open_round_trip(fingerprinter, batches, store_text):
    root = Path(tempfile.mkdtemp()) / "idx"
    try:
        create_index(root, fingerprinter.config)
        stored: list[ResponseRecord] = []
        for b, batch in enumerate(batches):
            records = [ResponseRecord(id=f"{b}-{i}", source="gen", line=i + 1, **r)
                       for i, r in enumerate(batch)]
            append_records(root, records, fingerprinter, store_text=store_text)
            stored.extend(records)
        with open_index(root, expected_config=fingerprinter.config) as idx:
            assert len(idx) == len(stored) and len(idx.segments) == len(batches)
            rows = list(range(len(stored)))
            texts = [r.response for r in stored]
            assert np.array_equal(idx.signatures(rows), fingerprinter.minhasher.signatures(texts))
            assert np.allclose(idx.embeddings(rows), fingerprinter.embedder.embed(texts),
                               atol=1e-3)  # stored as float16
            expected_style = fingerprinter.styler.transform(texts)
            assert (idx.style(rows) != expected_style).nnz == 0
            assert (idx.style(rows[::-1]) != expected_style[::-1]).nnz == 0
            back = idx.responses(rows)
            for row, r in zip(rows, stored):
                got = back[row]
                assert (got.id, got.model, got.account, got.source, got.line) == \
                    (r.id, r.model, r.account, r.source, r.line)
                assert got.response == (r.response if store_text else None)
                assert got.prompt == (r.prompt if store_text else None)
            idx.verify()
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
