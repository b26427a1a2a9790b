"""Choose MiniLM's fusion weight and abstention mix on the tuning questions; report the others.

    python bench/minilm_tune.py [--weights 0.35,0.5,0.65,0.8] [--json out.json]

For every question set and share removed (as `bench/quality.py`: whole, and a seeded 30 %
removed) and every semantic weight, the in-memory KB with MiniLM as the semantic side (its
per-KB self-check on) records per question: the rank of the first relevant article (as
`quality.py` ranks), and the signals abstention can read from the engine's top article, found
as the engine finds it (repaired query, best chunk per article): `lex` (the engine's lexical
confidence), `sem` (the MiniLM cosine of the query to the top passage) and `agree` (both
rankings hold the top article among their best two).

Tuning data: sample_questions (all) and the "tuning" split of sample_answers, whole and 30 %
removed. The weight is the one with the best mean MRR@10 over the tuning rows; the abstention
rule, `conf = a * lex + (1 - a) * sem + b * agree` (0 when `sem` < floor and `lex` < 0.7, as the
engine's WordLlama rule), answered when `conf` >= cut, is the grid point that maximises the
smaller of the two pooled tuning rates (unanswerable abstained, answerable answered). The chosen
rule is then reported on covidfaq and the held-out split, which were not used.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.minilm_eval import SETS, CachedEmbedder  # noqa: E402
from bench.quality import chunk_articles, load_kb, load_questions, removed_ids  # noqa: E402

TUNING = {("sample_questions", "all"), ("sample_answers", "tuning")}
STRONG_LEXICAL = 0.7  # the engine's: words held outright override a low cosine


def records(name: str, share: float, weight: float, embedder: Any) -> list[dict[str, Any]]:
    """One record per question (see the module doc)."""
    from worker.agent.bm25 import documents_from_rows
    from worker.agent.offline import AGREEMENT_TOP, CHUNKS_PER_ARTICLE, OfflineEngine
    from worker.agent.retrieval import KnowledgeBase

    kb_path, q_path = SETS[name]
    everything = load_kb(Path(kb_path) if kb_path.startswith("/") else ROOT / kb_path)
    questions = load_questions(Path(q_path) if q_path.startswith("/") else ROOT / q_path)
    removed = removed_ids(everything, share, 7)
    articles = [a for a in everything if a["id"] not in removed]
    docs = documents_from_rows(chunk_articles(articles, 120))
    kb = KnowledgeBase.from_documents(docs, embedder=embedder, semantic_weight=weight)
    engine = OfflineEngine(kb)
    out = []
    for q in questions:
        relevant = set(q["relevant_ids"]) - removed
        ranked = [p.external_id for p in kb.search(q["question"], limit=10)]
        rank = next((i for i, e in enumerate(ranked) if e in relevant), None)
        query = kb.repair(q["question"])
        firsts: list[Any] = []
        for p in kb.search(query, limit=5, per_document=CHUNKS_PER_ARTICLE):
            if p.document_id not in {f.document_id for f in firsts}:
                firsts.append(p)
        top = firsts[0] if firsts else None
        lex = engine.confidence(query, [dataclasses.replace(p, semantic=None) for p in firsts])
        agree = False
        if top is not None:
            by_lex = sorted(firsts, key=lambda p: -p.lexical)[:AGREEMENT_TOP]
            by_sem = sorted(firsts, key=lambda p: -(p.semantic or 0.0))[:AGREEMENT_TOP]
            agree = top in by_lex and top in by_sem
        out.append(
            {
                "set": name,
                "split": q.get("split", "all"),
                "share": share,
                "answerable": bool(relevant),
                "rank": rank,
                "right": top is not None and top.external_id in relevant,
                "lex": float(lex),
                "sem": float(top.semantic or 0.0) if top is not None else 0.0,
                "agree": agree,
                "semantic_on": kb.semantic,
            }
        )
    return out


def mrr(rows: list[dict[str, Any]]) -> float:
    ans = [r for r in rows if r["answerable"]]
    return sum(1 / (r["rank"] + 1) for r in ans if r["rank"] is not None) / max(len(ans), 1)


def conf(r: dict[str, Any], a: float, b: float, floor: float) -> float:
    if r["sem"] < floor and r["lex"] < STRONG_LEXICAL:
        return 0.0
    return a * r["lex"] + (1 - a) * r["sem"] + b * r["agree"]


def rates(rows: list[dict[str, Any]], a: float, b: float, floor: float, cut: float) -> dict:
    """Unanswerable abstained, answerable answered, answered right."""
    neg = [r for r in rows if not r["answerable"]]
    pos = [r for r in rows if r["answerable"]]
    said = [conf(r, a, b, floor) >= cut for r in pos]
    return {
        "abstained": float(np.mean([conf(r, a, b, floor) < cut for r in neg])) if neg else None,
        "answered": float(np.mean(said)) if pos else None,
        "right": float(np.mean([s and r["right"] for s, r in zip(said, pos, strict=True)]))
        if pos
        else None,
        "n_neg": len(neg),
        "n_pos": len(pos),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="0.35,0.5,0.65,0.8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    logging.disable(logging.INFO)
    from worker.agent.embeddings import MiniLMEmbedder

    embedder = CachedEmbedder(MiniLMEmbedder())
    weights = [float(w) for w in args.weights.split(",")]
    by_weight: dict[float, list[dict[str, Any]]] = {}
    for weight in weights:
        rows = []
        for name in ("sample_questions", "sample_answers", "covidfaq"):
            for share in (0.0, 0.3):
                rows += records(name, share, weight, embedder)
        by_weight[weight] = rows
        print(f"weight {weight}:", flush=True)
        groups = sorted({(r["set"], r["split"], r["share"]) for r in rows})
        for g in groups:
            sub = [r for r in rows if (r["set"], r["split"], r["share"]) == g]
            ans = [r for r in sub if r["answerable"]]
            r1 = sum(r["rank"] == 0 for r in ans) / len(ans)
            r5 = sum(r["rank"] is not None and r["rank"] < 5 for r in ans) / len(ans)
            tag = "tuning" if (g[0], g[1]) in TUNING else "other"
            print(f"  {tag:6s} {g}: R@1 {r1:.3f} R@5 {r5:.3f} MRR@10 {mrr(sub):.3f}")
    tuning_mrr = {
        w: float(
            np.mean(
                [
                    mrr([r for r in rows if (r["set"], r["split"], r["share"]) == g])
                    for g in {(r["set"], r["split"], r["share"]) for r in rows}
                    if (g[0], g[1]) in TUNING
                ]
            )
        )
        for w, rows in by_weight.items()
    }
    best_w = max(tuning_mrr, key=lambda w: (round(tuning_mrr[w], 4), -w))
    print("tuning MRR@10 by weight:", tuning_mrr, "chosen", best_w)
    rows = by_weight[best_w]
    tuning = [r for r in rows if (r["set"], r["split"]) in TUNING]
    best: tuple[float, ...] = (-1.0,)
    grid = itertools.product(
        np.arange(0.0, 1.01, 0.1),  # a: lexical share
        (0.0, 0.05, 0.1),  # b: agreement bonus
        (0.0, 0.1, 0.2, 0.3),  # floor
        np.arange(0.1, 0.8, 0.01),  # cut
    )
    for a, b, floor, cut in grid:
        m = rates(tuning, a, b, floor, cut)
        score = min(m["abstained"], m["answered"])
        key = (score, m["right"], -abs(a - 0.5))
        if key > best[:3]:
            best = (*key, a, b, floor, cut)
    a, b, floor, cut = (float(x) for x in best[3:])
    print(f"chosen on tuning: a={a:.2f} b={b:.2f} floor={floor:.2f} cut={cut:.2f} -> {best[0]:.3f}")
    report = {}
    for g in sorted({(r["set"], r["split"], r["share"]) for r in rows}):
        sub = [r for r in rows if (r["set"], r["split"], r["share"]) == g]
        tag = "tuning" if (g[0], g[1]) in TUNING else "reported"
        report[str(g)] = rates(sub, a, b, floor, cut)
        print(f"  {tag:8s} {g}: {json.dumps(report[str(g)])}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tuning_mrr": tuning_mrr,
                    "weight": best_w,
                    "rule": {"a": a, "b": b, "floor": floor, "cut": cut},
                    "report": report,
                    "records": {str(w): r for w, r in by_weight.items()},
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
