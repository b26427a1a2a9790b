"""MiniLM (a sentence encoder run in numpy) against BM25 and WordLlama: ranking, abstention, cost.

    python bench/minilm_eval.py [--sets covidfaq,sample_questions,sample_answers]
                                [--remove-share 0.3] [--seed 7] [--json out.json]

For each question set, on the whole KB and with the seeded share of articles removed that
`bench/quality.py` removes (same `removed_ids`), it reports:

- ranking (answerable questions, document level): R@1 / R@5 / MRR@10 of MiniLM alone (an
  article's score = its best chunk's cosine), BM25 alone (the engine with no semantic side),
  the current default (BM25 + WordLlama, with the per-KB self-check), and BM25 + MiniLM both
  with the self-check and with the semantic vote forced on (`forced`);
- abstention separation, per engine: positives = answerable questions whose top article (the
  engine's first passage) is relevant, negatives = questions the KB cannot answer; for each
  signal the AUC (Mann-Whitney) and the best equal-rate point (the threshold maximising the
  smaller of "positives answered" and "negatives abstained"). Signals: `conf` the engine's own
  confidence, `lex` its lexical part alone, `mini_best` the MiniLM cosine of the question to
  the best chunk of the whole KB, `mini_top` its cosine to the engine's top passage, `mix`
  0.5 lex + 0.5 mini_top (the Third round's mix, with MiniLM's cosine);
- cost: query embedding (p50 wall and CPU of this thread, OpenBLAS held to one thread as in
  the embedder), ingestion CPU per chunk, memory of the loaded model (RssAnon / RssFile).

Chunk and query vectors are cached by text within the run (the same model gives the same
vector), so each text is embedded once whatever the number of configurations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality import chunk_articles, load_kb, load_questions, removed_ids  # noqa: E402

SETS = {
    "covidfaq": (
        "/work/shared/data/covidfaq/kb.jsonl",
        "/work/shared/data/covidfaq/questions.jsonl",
    ),
    "sample_questions": ("data/sample_kb", "bench/sample_questions.jsonl"),
    "sample_answers": ("data/sample_kb", "bench/sample_answers.jsonl"),
}


def _mem() -> dict[str, int]:
    """RssAnon / RssFile of this process in MB (file pages are shareable between processes)."""
    status = Path("/proc/self/status").read_text()
    return {
        k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) // 1024  # type: ignore[union-attr]
        for k in ("RssAnon", "RssFile")
    }


class CachedEmbedder:
    """The wrapped embedder with a per-text cache (bench only: every configuration embeds the
    same chunks and questions)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.synonyms = getattr(inner, "synonyms", True)
        self.cache: dict[str, np.ndarray] = {}
        self.cpu = 0.0  # CPU seconds spent embedding uncached texts
        self.embedded = 0

    def vocabulary(self) -> dict[str, int]:
        return self.inner.vocabulary()

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            started = time.thread_time()
            for text, vec in zip(missing, self.inner.embed(missing), strict=True):
                self.cache[text] = vec
            self.cpu += time.thread_time() - started
            self.embedded += len(missing)
        return np.vstack([self.cache[t] for t in texts]) if texts else np.zeros((0, 1))


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a positive scores above a negative), ties counting half."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos), np.asarray(neg)
    greater = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return float(greater / (len(p) * len(n)))


def equal_rate(pos: list[float], neg: list[float]) -> tuple[float, float]:
    """(best min(answered positives, abstained negatives), its threshold): answer when the
    score is >= the threshold."""
    best = (0.0, 0.0)
    for cut in sorted(set(pos) | set(neg)):
        answered = float(np.mean([s >= cut for s in pos])) if pos else 0.0
        abstained = float(np.mean([s < cut for s in neg])) if neg else 0.0
        best = max(best, (min(answered, abstained), cut))
    return best


def build_kb(docs: list[Any], embedder: Any, forced: float | None) -> Any:
    """An in-memory KB; `forced`: the semantic weight, bypassing the per-KB self-check."""
    from worker.agent import retrieval
    from worker.agent.bm25 import documents_from_rows  # noqa: F401  (docs are built by caller)
    from worker.agent.selfcheck import CheckResult

    original = retrieval.choose_weight
    if forced is not None:
        retrieval.choose_weight = lambda *_a, **_k: CheckResult(forced, 0.0, 0.0, 0)
    try:
        docs = [dataclasses.replace(d, meta=dict(d.meta)) for d in docs]
        return retrieval.KnowledgeBase.from_documents(docs, embedder=embedder)
    finally:
        retrieval.choose_weight = original


def run_set(name: str, share: float, seed: int, embedders: dict[str, Any]) -> dict[str, Any]:
    """All measurements for one question set and one removed share."""
    from worker.agent.bm25 import documents_from_rows
    from worker.agent.offline import CHUNKS_PER_ARTICLE, OfflineEngine
    from worker.agent.retrieval import _embedding_text

    kb_path, q_path = SETS[name]
    everything = load_kb(Path(kb_path) if kb_path.startswith("/") else ROOT / kb_path)
    questions = load_questions(Path(q_path) if q_path.startswith("/") else ROOT / q_path)
    removed = removed_ids(everything, share, seed)
    articles = [a for a in everything if a["id"] not in removed]
    rows = chunk_articles(articles, 120)
    docs = documents_from_rows(rows)
    mini = embedders["minilm"]
    configs = {
        "bm25": build_kb(docs, None, None),
        "wordllama": build_kb(docs, embedders["wordllama"], None),
        "minilm": build_kb(docs, mini, None),
        "minilm_forced": build_kb(docs, mini, 0.35),
    }
    chunk_ids = [d.id for d in docs]
    chunk_ext = [str(d.meta.get("external_id")) for d in docs]
    chunk_vecs = mini.embed([_embedding_text(d) for d in docs])
    chunk_row = {cid: i for i, cid in enumerate(chunk_ids)}
    out: dict[str, Any] = {
        "articles": len(articles),
        "removed": len(removed),
        "chunks": len(docs),
        "semantic_on": {k: kb.semantic for k, kb in configs.items()},
    }
    splits: dict[str, dict[str, Any]] = {}
    for q in questions:
        split = q.get("split", "all")
        relevant = set(q["relevant_ids"]) - removed
        s = splits.setdefault(split, {"ranks": {}, "signals": {}})
        qvec = mini.embed([q["question"]])[0]
        sims = chunk_vecs @ qvec
        ranks = s["ranks"]
        # MiniLM alone: articles by their best chunk's cosine
        best: dict[str, float] = {}
        for i in np.argsort(-sims, kind="stable").tolist():
            best.setdefault(chunk_ext[i], float(sims[i]))
        mini_order = list(best)[:10]
        orders = {"minilm_alone": mini_order}
        for cname, kb in configs.items():
            orders[cname] = [p.external_id for p in kb.search(q["question"], limit=10)]
        if relevant:
            for cname, order in orders.items():
                rank = next((i for i, e in enumerate(order) if e in relevant), None)
                ranks.setdefault(cname, []).append(rank)
        mini_best = float(sims.max()) if len(sims) else 0.0
        for cname, kb in configs.items():
            if cname == "minilm":
                continue  # equals bm25 or minilm_forced, whichever the self-check chose
            engine = OfflineEngine(kb)
            reply = engine.answer(q["question"], history=[], attachments=[], emit=lambda *_: None)
            query = kb.repair(q["question"])
            passages = kb.search(query, limit=5, per_document=CHUNKS_PER_ARTICLE)
            firsts = []
            for p in passages:
                if p.document_id not in {f.document_id for f in firsts}:
                    firsts.append(p)
            top = firsts[0] if firsts else None
            lex = engine.confidence(query, [dataclasses.replace(p, semantic=None) for p in firsts])
            mini_top = float(chunk_vecs[chunk_row[top.chunk_id]] @ qvec) if top else 0.0
            label = None
            if not relevant:
                label = "neg"
            elif top is not None and top.external_id in relevant:
                label = "pos"
            sig = s["signals"].setdefault(cname, [])
            sig.append(
                {
                    "label": label,
                    "answerable": bool(relevant),
                    "abstained": reply.escalation_reason == "low_confidence",
                    "right": bool(relevant) and top is not None and top.external_id in relevant,
                    "conf": float(reply.confidence),
                    "lex": float(lex),
                    "mini_best": mini_best,
                    "mini_top": mini_top,
                    "mix": 0.5 * float(lex) + 0.5 * mini_top,
                }
            )
    out["splits"] = splits
    return out


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Rates and separations from the raw per-question records."""
    table: dict[str, Any] = {}
    for split, s in result["splits"].items():
        row: dict[str, Any] = {"ranking": {}, "separation": {}, "engine": {}}
        for cname, ranks in s["ranks"].items():
            n = len(ranks)
            row["ranking"][cname] = {
                "n": n,
                "r1": sum(r == 0 for r in ranks) / n,
                "r5": sum(r is not None and r < 5 for r in ranks) / n,
                "mrr10": sum(1 / (r + 1) for r in ranks if r is not None) / n,
            }
        for cname, recs in s["signals"].items():
            pos = [r for r in recs if r["label"] == "pos"]
            neg = [r for r in recs if r["label"] == "neg"]
            answerable = [r for r in recs if r["answerable"]]
            row["engine"][cname] = {
                "unanswerable": len(neg),
                "unanswerable_abstained": (
                    sum(r["abstained"] for r in neg) / len(neg) if neg else None
                ),
                "answerable_answered": (
                    sum(not r["abstained"] for r in answerable) / len(answerable)
                    if answerable
                    else None
                ),
                "answered_right": (
                    sum((not r["abstained"]) and r["right"] for r in answerable) / len(answerable)
                    if answerable
                    else None
                ),
                "positives": len(pos),
            }
            sep = {}
            for key in ("conf", "lex", "mini_best", "mini_top", "mix"):
                p, n = [r[key] for r in pos], [r[key] for r in neg]
                rate, cut = equal_rate(p, n)
                sep[key] = {"auc": auc(p, n), "equal_rate": rate, "cut": cut}
            row["separation"][cname] = sep
        table[split] = row
    return table


def cost(embedder: Any) -> dict[str, float]:
    """Query embedding time, ingestion CPU per chunk, and the loaded model's memory."""
    queries = [
        "How do I reset my password?",
        "wher is my pakage",
        "Can I book a table for two tonight?",
        "how long till a refund shows up on my visa",
        "Can coronavirus spread through feces?",
    ] * 40
    embedder.embed(queries[:3])
    wall, cpu = [], []
    for q in queries:
        w0, c0 = time.perf_counter(), time.thread_time()
        embedder.embed([q])
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
    return {
        "query_ms_p50_wall": 1000 * statistics.median(wall),
        "query_ms_p50_cpu": 1000 * statistics.median(cpu),
        "query_ms_p95_cpu": 1000 * float(np.percentile(cpu, 95)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the sets, print markdown tables, optionally dump JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="covidfaq,sample_questions,sample_answers")
    parser.add_argument("--remove-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    logging.disable(logging.INFO)  # haystack logs every component run
    from worker.agent.embeddings import MiniLMEmbedder, WordLlamaEmbedder

    before = _mem()
    started = time.thread_time()
    raw_mini = MiniLMEmbedder()
    load_cpu = time.thread_time() - started
    loaded = _mem()
    raw_mini.embed(["warm up the mapped weights: every page is read once"])
    warmed = _mem()
    costs = cost(raw_mini)
    costs["load_cpu_s"] = load_cpu
    costs["rss_anon_mb_after_load"] = loaded["RssAnon"] - before["RssAnon"]
    costs["rss_file_mb_after_first_encode"] = warmed["RssFile"] - before["RssFile"]
    costs["rss_anon_mb_after_first_encode"] = warmed["RssAnon"] - before["RssAnon"]
    embedders = {"minilm": CachedEmbedder(raw_mini), "wordllama": WordLlamaEmbedder()}
    results: dict[str, Any] = {"cost": costs, "sets": {}}
    for name in args.sets.split(","):
        for share in (0.0, args.remove_share):
            key = f"{name} {share:.0%}"
            before_cpu, before_n = embedders["minilm"].cpu, embedders["minilm"].embedded
            raw = run_set(name, share, args.seed, embedders)
            summary = summarise(raw)
            results["sets"][key] = raw | {"summary": summary}  # raw: per-question records
            spent = embedders["minilm"].cpu - before_cpu
            print(
                f"## {key}: {raw['articles']} articles, {raw['chunks']} chunks, semantic on: "
                f"{raw['semantic_on']}; MiniLM embedded {embedders['minilm'].embedded - before_n}"
                f" new texts in {spent:.1f} s CPU",
                flush=True,
            )
            for split, row in summary.items():
                print(f"### {split}")
                for cname, m in row["ranking"].items():
                    print(
                        f"  rank {cname:14s} n={m['n']:3d} R@1 {m['r1']:.3f} R@5 {m['r5']:.3f}"
                        f" MRR@10 {m['mrr10']:.3f}"
                    )
                for cname, e in row["engine"].items():
                    print(f"  engine {cname:13s} {json.dumps(e)}")
                    for sig, v in row["separation"][cname].items():
                        print(
                            f"    {sig:9s} AUC {v['auc']:.3f} equal-rate {v['equal_rate']:.3f}"
                            f" at {v['cut']:.3f}"
                        )
    # ingestion: CPU per chunk, measured on every distinct chunk text of the sets above
    from worker.agent.bm25 import documents_from_rows
    from worker.agent.retrieval import _embedding_text

    texts = []
    for name in args.sets.split(","):
        kb_path = SETS[name][0]
        arts = load_kb(Path(kb_path) if kb_path.startswith("/") else ROOT / kb_path)
        texts += [_embedding_text(d) for d in documents_from_rows(chunk_articles(arts, 120))]
    texts = list(dict.fromkeys(texts))
    c0 = time.thread_time()
    raw_mini.embed(texts)
    costs["ingest_ms_per_chunk_cpu"] = 1000 * (time.thread_time() - c0) / len(texts)
    costs["ingest_chunks"] = len(texts)
    print("## cost", json.dumps(costs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
