"""The "onnx-int8" embedding backend: the transformer exported to ONNX, int8 weights, run by
onnxruntime directly.

Why this shape:

- optimum cannot be installed beside transformers 5, so the graph is exported with
  ``torch.onnx.export`` (the TorchScript exporter: the dynamo one needs onnxscript) and
  quantised with ``onnxruntime.quantization.quantize_dynamic``; at run time only onnxruntime and
  tokenizers are used, never torch.
- Quantisation is dynamic: int8 weights, per output channel; activations are quantised per
  tensor at run time. Every MatMul with a weight matrix is quantised except the feed-forward
  down-projections (intermediate_size -> hidden_size): their input is the GELU output, whose
  long tail a single per-tensor uint8 range cannot hold. Quantising them too is about 25%
  faster but brings the cosine to the fp32 vectors down to mean 0.995, min 0.976 (256 AlpacaEval
  answers); without them it is 0.998 and 0.983 (512 answers, benchmarks/embedding_speed.py),
  and the goal is >= 0.98.
- Each text is run alone. Because activation ranges are per tensor, a batched text's vector
  would depend on its batch neighbours (measured: cosine between a text embedded alone and in
  a batch of 8 as low as 0.98), and a fingerprint must be a function of the text. Alone also
  means no padding at all, which is what length-sorted batching is for; on answers of a few
  hundred tokens it is as fast as batch 8 (short texts would gain from batching).
- Pooling is the model's: mean over the tokens, then L2 normalisation, as sentence-transformers
  does for this model (checked against its modules.json), computed in numpy.

The derived graph is cached (fingerprint.embed_cache) and checked at build time against the fp32
export on fixed probe sentences.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fingerprint.embed_cache import load_or_build
from fingerprint.embed_model import (EMBEDDING_DTYPE, EmbeddingModelError, check_mean_pooling,
                                     clip, load_tokenizer, local_model_dir, normalise_rows,
                                     quiet_transformers, read_json, set_offline_environment)

RECIPE = "onnx-int8"
RECIPE_VERSION = 1
WHAT = "int8 ONNX graph"
BUILD_SECONDS = 5  # a first build on two cores (benchmarks/README.md), for the log message
FILES = ("model.onnx",)
OPSET = 17
THREADS_ENV = "FINGERPRINT_ONNX_THREADS"
MIN_PROBE_COSINE = 0.98

PROBES = (
    "The cat sat on the mat.",
    "Quarterly tax filings are due in April; late filings incur a penalty.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Here are five tips for a good night's sleep:\n1. Keep a regular schedule.\n2. Avoid "
    "caffeine after noon.\n3. Keep the bedroom dark and cool.\n4. Exercise, but not late.\n5. "
    "Put screens away an hour before bed.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
)


def build(model_dir: Path, out: Path) -> dict[str, Any]:
    """Export, quantise and check the graph into ``out/model.onnx``; returns what it did."""
    set_offline_environment()
    import onnx
    import onnxruntime
    import torch

    quiet_transformers()
    fp32 = out / "fp32.onnx"
    names = _export_fp32(model_dir, fp32)
    kept_fp32 = _quantise(fp32, out / "model.onnx",
                          int(read_json(model_dir / "config.json").get("intermediate_size", -1)))
    tokenizer = load_tokenizer(model_dir, 128)
    reference = _run_all(_session(fp32), tokenizer, list(PROBES))
    quantised = _run_all(_session(out / "model.onnx"), tokenizer, list(PROBES))
    cosines = np.sum(reference * quantised, axis=1)
    fp32.unlink()
    if float(cosines.min()) < MIN_PROBE_COSINE:
        raise EmbeddingModelError(
            f"the int8 graph of {model_dir} drifts from fp32 (probe cosine {cosines.min():.4f} "
            f"< {MIN_PROBE_COSINE}); use embedding backend 'torch' for this model")
    return {"opset": OPSET, "inputs": names, "weights": "int8 per channel",
            "fp32_matmuls": len(kept_fp32), "probe_min_cosine": round(float(cosines.min()), 5),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__}}


def _export_fp32(model_dir: Path, fp32: Path) -> list[str]:
    """The transformer's last hidden state as an fp32 ONNX graph; returns its input names."""
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise EmbeddingModelError(f"cannot load {model_dir} with transformers: {exc}") from exc
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class LastHiddenState(torch.nn.Module):
        """transformers 5 models take keyword arguments only; the exporter passes positions."""

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    example = torch.ones((2, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in names + ["last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python code
        torch.onnx.export(LastHiddenState(model), tuple(example for _ in names), str(fp32),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    return names


def _quantise(fp32: Path, target: Path, intermediate_size: int) -> list[str]:
    """int8 per-channel weights for the MatMuls that tolerate it; the names of those kept fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exported = onnx.load(str(fp32))
    kept_fp32 = _unquantised_matmuls(exported.graph, intermediate_size)
    del exported
    quiet = _DropRecords("Please consider to run pre-processing")
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=kept_fp32)
    finally:
        logging.getLogger().removeFilter(quiet)
    return kept_fp32


def _unquantised_matmuls(graph: Any, intermediate_size: int) -> list[str]:
    """MatMuls left in fp32: those without a weight matrix (attention scores), and the
    feed-forward down-projections, recognised by their (intermediate_size, hidden) weight."""
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        shape = weights.get(node.input[1])
        if shape is None or (len(shape) == 2 and shape[0] == intermediate_size):
            keep.append(node.name)
    return keep


class _DropRecords(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads:
        try:
            options.intra_op_num_threads = int(threads)
        except ValueError:
            raise EmbeddingModelError(f"{THREADS_ENV} must be an integer, got {threads!r}")
    options.log_severity_level = 3  # errors only: not every optional fusion applies
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_all(session: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Each text alone (see the module docstring): mean of its token states, normalised."""
    names = [i.name for i in session.get_inputs()]
    vectors = None
    for row, encoding in enumerate(tokenizer.encode_batch(texts)):
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, {n: feeds[n] for n in names})[0][0]
        if vectors is None:
            vectors = np.empty((len(texts), hidden.shape[-1]), dtype=np.float32)
        vectors[row] = hidden.mean(axis=0)
    return normalise_rows(vectors)


class OnnxInt8Backend:
    def __init__(self, model_name: str):
        set_offline_environment()
        model_dir = local_model_dir(model_name, RECIPE)
        check_mean_pooling(model_dir, RECIPE)
        config = read_json(model_dir / "config.json")
        self.dim = int(config["hidden_size"])
        self.max_positions = int(config.get("max_position_embeddings", 1 << 30))
        self.model_dir = model_dir
        self.entry, self.record = load_or_build(RECIPE, RECIPE_VERSION, model_dir, FILES,
                                                lambda out: build(model_dir, out), WHAT,
                                                BUILD_SECONDS)
        self.session = _session(self.entry / "model.onnx")
        self._tokenizers: dict[int, Any] = {}

    def embed(self, texts: Sequence[str], max_tokens: int, batch_size: int) -> np.ndarray:
        """``batch_size`` is ignored: texts run one at a time (module docstring)."""
        if max_tokens > self.max_positions:
            raise EmbeddingModelError(
                f"embedding_max_tokens {max_tokens} exceeds the {self.max_positions} positions "
                f"of {self.model_dir}")
        if max_tokens not in self._tokenizers:
            self._tokenizers[max_tokens] = load_tokenizer(self.model_dir, max_tokens)
        vectors = _run_all(self.session, self._tokenizers[max_tokens], clip(texts, max_tokens))
        return vectors.astype(EMBEDDING_DTYPE, copy=False)
