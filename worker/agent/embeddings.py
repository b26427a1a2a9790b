"""Sentence embeddings for the semantic side of retrieval: a model shipped in a wheel, or any
OpenAI-compatible `/v1/embeddings` endpoint.

Vectors are float32 and L2-normalised, so a dot product is the cosine and one matrix-vector
product scores every chunk. The default model is WordLlama's 256-dimensional static embedding,
which ships inside the `wordllama` wheel (weights and tokenizer) and loads with no network; we
keep its first 128 dimensions (it is trained Matryoshka-style), which halves the memory read per
query at 100k chunks and so keeps a search under 5 ms (measured in bench/retrieval.py).

Each stored vector carries the `model_id` that made it, so a change of model or dimension is
seen at the next index build and the stale vectors are recomputed (see `retrieval`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np
from tokenizers import Tokenizer

from models.settings import Settings, get_settings

__all__ = [
    "Embedder",
    "EmbeddingError",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "WordLlamaEmbedder",
    "chunk_text_for_embedding",
    "from_blob",
    "get_embedder",
    "to_blob",
]

log = logging.getLogger(__name__)

_OPENAI_BATCH = 64  # inputs per request: keeps a request small for local servers
_POOL_BATCH = 512  # texts per token lookup: ~35 MB of token vectors for 120-word chunks
_MAX_CHARS = 4000  # a chunk is ~120 words; this only guards against pathological input


class EmbeddingError(RuntimeError):
    """The embeddings endpoint failed or answered with something that is not embeddings."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of one fixed model."""

    model_id: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length (or zero for an empty text)."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows (no known token) stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class WordLlamaEmbedder:
    """WordLlama's static embedding, loaded from the installed package's own folder, offline."""

    # The fusion weight measured for this model (bench/README.md, round of 2026-12-06): flat
    # from 0.7 to 0.9 on both tuning sets of the sample help centre, chosen on one set and
    # checked on the other. It was 0.35 when the meaning voted on every KB and that weight
    # cost the medical FAQ least; since each index build checks whether the meaning may vote
    # at all (`selfcheck`), a KB where it hurts gets 0 whatever this says, and one where it
    # helps should let it count. Still scaled down as the query's own words match better.
    fusion_weight = 0.8

    def __init__(self, dim: int = 128) -> None:
        import wordllama
        from wordllama import WordLlama

        folder = Path(wordllama.__file__).resolve().parent
        # cache_dir = the package itself and no download: the wheel holds weights and tokenizer,
        # and the default call would otherwise try Hugging Face for the tokenizer.
        trunc = dim if dim < 256 else None
        self._model = WordLlama.load(
            cache_dir=folder, disable_download=True, dim=256, trunc_dim=trunc
        )
        self.dim = dim
        self.model_id = f"wordllama/l2_supercat/{dim}"
        self._words: dict[str, int] | None = None
        # The model's own embed pads every batch of 64 texts to its longest one and multiplies
        # a (batch x longest x dim) array by the padding mask; we average each text's own
        # token vectors instead, from an unpadded copy of its tokenizer (see `_mean_vectors`).
        self._table = self._model.embedding
        self._tokenizer = Tokenizer.from_str(self._model.tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def vocabulary(self) -> dict[str, int]:
        """Whole lower-case words of the model's tokenizer with their rank (lower = more
        common): a general English word list shipped in the wheel, for typo repair."""
        if self._words is None:
            vocab = self._model.tokenizer.get_vocab()
            self._words = {
                tok[1:]: rank
                for tok, rank in vocab.items()
                if tok.startswith("\u2581") and tok[1:].isalpha() and tok[1:].islower()
            }
        return self._words

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts` (a few µs each: a token lookup and an average)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _POOL_BATCH):
            batch = [t[:_MAX_CHARS] for t in texts[start : start + _POOL_BATCH]]
            out[start : start + len(batch)] = self._mean_vectors(batch)
        return _normalise(out)

    def _mean_vectors(self, texts: list[str]) -> np.ndarray:
        """Each text's mean token vector (zero for a text with no token): the same sums in the
        same order as the model's padded batches, so bit-for-bit the same vectors."""
        encoded = self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        table, last = self._table, len(self._table) - 1
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        for k, enc in enumerate(encoded):
            if enc.ids:
                ids = np.clip(np.array(enc.ids, dtype=np.intp), 0, last)  # as the model does
                out[k] = table[ids].sum(axis=0) / np.float32(len(ids))
        return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, a sentence encoder, run in numpy from its wheel (`worker.agent.minilm`).

    It reads word order and context, where WordLlama averages word vectors; it costs ~15 ms of
    CPU per query and ~40 ms per 120-word chunk at ingestion instead of microseconds, and its
    384-dimensional vectors are 3x WordLlama's 128 (bench/README.md, "A sentence encoder from
    a PyPI wheel"). No word-vector synonyms: mapping every KB word through a sentence encoder
    at each index build would cost seconds per thousand words, and the encoder already reads
    "headset" near "headphones" on the ranking side."""

    synonyms = False  # see the class docstring
    _MEMO = 4096  # texts whose vectors are kept (see `embed`): ~6 MB
    # Its fusion weight (with SEMANTIC_WEIGHT unset): the best mean MRR@10 over the tuning
    # questions of 0.35 / 0.5 / 0.65 / 0.8 (bench/minilm_tune.py); a sentence encoder's
    # ranking deserves more say than WordLlama's 0.35.
    fusion_weight = 0.5

    def __init__(self) -> None:
        from worker.agent.minilm import MiniLMEncoder

        self._encoder = MiniLMEncoder()
        self.dim = self._encoder.dim
        self.model_id = f"minilm/all-MiniLM-L6-v2/{self.dim}"
        self._words: dict[str, int] | None = None
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()

    def vocabulary(self) -> dict[str, int]:
        """Whole lower-case words of the model's WordPiece vocabulary (~22k), rank = token id
        (BERT's vocabulary lists words roughly by frequency): the general word list for typo
        repair, as WordLlama's tokenizer gives one."""
        if self._words is None:
            vocab = self._encoder.tokenizer.get_vocab()
            self._words = {
                tok: rank for tok, rank in vocab.items() if tok.isalpha() and tok.islower()
            }
        return self._words

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors; a text with nothing but whitespace gets a zero vector (no evidence),
        as WordLlama gives one for a text with no known token.

        Recent texts' vectors are kept (`_MEMO` of them, ~1.5 KB each): every index build's
        self-check embeds up to 300 article bodies again (~25 s of CPU with this model, under
        0.1 s with WordLlama), and after a KB edit nearly all of them are unchanged."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._memo_lock:
            for i, text in enumerate(texts):
                text = text[:_MAX_CHARS]
                if not text.strip():
                    continue
                vec = self._memo.get(text)
                if vec is not None:
                    self._memo.move_to_end(text)
                    out[i] = vec
                else:
                    todo.setdefault(text, []).append(i)
        if todo:
            fresh = self._encoder.encode(list(todo))
            with self._memo_lock:
                for (text, rows), vec in zip(todo.items(), fresh, strict=True):
                    out[rows] = vec
                    self._memo[text] = vec
                while len(self._memo) > self._MEMO:
                    self._memo.popitem(last=False)
        return out


class OpenAIEmbedder:
    """Any server speaking OpenAI's `POST {base}/embeddings` (OpenAI, Ollama, vLLM...)."""

    def __init__(
        self, *, base_url: str, model: str, api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.model_id = f"openai/{model}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors in input order, requested in batches; raises `EmbeddingError` on failure."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), _OPENAI_BATCH):
            batch = [t[:_MAX_CHARS] or " " for t in texts[start : start + _OPENAI_BATCH]]
            try:
                resp = self._client.post(
                    self.url, json={"model": self.model, "input": batch}, headers=self._headers
                )
            except httpx.HTTPError as exc:
                raise EmbeddingError(f"embeddings endpoint unreachable: {exc}") from exc
            if resp.status_code != 200:
                raise EmbeddingError(f"embeddings endpoint answered {resp.status_code}")
            try:
                data = sorted(resp.json()["data"], key=lambda d: d["index"])
                vectors = [d["embedding"] for d in data]
            except (ValueError, KeyError, TypeError) as exc:
                raise EmbeddingError("embeddings endpoint sent no embeddings") from exc
            if len(vectors) != len(batch):
                raise EmbeddingError(f"asked for {len(batch)} embeddings, got {len(vectors)}")
            rows.extend(vectors)
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(np.array(rows, dtype=np.float32))


def chunk_text_for_embedding(title: str, section: str | None, content: str) -> str:
    """What a chunk's vector is made from: the heading path says what the passage is about."""
    head = title if not section or section == title else f"{title}. {section}"
    return f"{head}. {content}" if head else content


def to_blob(vector: np.ndarray) -> bytes:
    """A vector as stored in `kb_chunks.embedding` (little-endian float32)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes | None, dim: int) -> np.ndarray | None:
    """The stored vector, or None when missing or of another size."""
    if not blob or len(blob) != 4 * dim:
        return None
    return np.frombuffer(blob, dtype="<f4")


_cached: dict[tuple[str, ...], Embedder | None] = {}
_cached_lock = threading.Lock()


def get_embedder(settings: Settings | None = None) -> Embedder | None:
    """The configured embedder for this process (None when `EMBEDDINGS_PROVIDER=none`)."""
    settings = settings or get_settings()
    key = (
        settings.embeddings_provider,
        settings.embeddings_model,
        settings.embeddings_base_url or "",
        str(settings.embeddings_dim),
    )
    with _cached_lock:
        if key not in _cached:
            _cached[key] = _build(settings)
        return _cached[key]


def _build(settings: Settings) -> Embedder | None:
    provider = settings.embeddings_provider
    if provider == "none":
        return None
    if provider == "openai":
        return OpenAIEmbedder(
            base_url=settings.embeddings_base_url or "https://api.openai.com/v1",
            model=settings.embeddings_model,
            api_key=settings.embeddings_api_key,
            timeout=settings.llm_timeout,
        )
    if provider == "minilm":
        return MiniLMEmbedder()
    return WordLlamaEmbedder(dim=settings.embeddings_dim)
