"""Per-KB self-calibrated abstention, measured (issue 9 item 2; session 8).

    python bench/self_calibration.py [--sets sample_questions,sample_answers,covidfaq]
                                     [--share 0.3] [--seed 7] [--words 8] [--blank]
                                     [--out FILE.jsonl]

The idea: a knowledge base supplies its own labelled examples at ingestion. From each article
we make pseudo-questions (its title, its section headings, a few of its sentences cut down to
their first words that are no stop words), ask each once against the whole KB (answerable: the
article is there) and once against the KB rebuilt without that article (unanswerable by
construction), and fit, for THIS KB, either the confidence cut alone or a small logistic model
over signals the engine already computes. If that worked, the threshold would follow each help
centre's size, vocabulary and language instead of one constant.

How it is measured: bench/quality.py's removal protocol (a seeded share of the articles
removed; a question whose relevant articles were all removed is unanswerable). The calibration
is fitted on the KB that remains, exactly as ingestion would see it, never on the real
questions; the real questions are then decided by (a) the engine's default threshold, (b) the
self-fitted cut on the confidence, (c) the self-fitted logistic model, and both rates printed.
The decision is simulated on the signals of the engine's own single-turn search (the query the
engine searches, its confidence); the default row reproduces bench/quality.py's rates. Each
set also prints a bound: the same two rules fitted on the real questions themselves (in-sample),
the best any calibration over these signals could reach.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETS = {
    "sample_questions": (ROOT / "data/sample_kb", ROOT / "bench/sample_questions.jsonl"),
    "sample_answers": (ROOT / "data/sample_kb", ROOT / "bench/sample_answers.jsonl"),
    "covidfaq": (
        ROOT / "../shared/data/covidfaq/kb.jsonl",
        ROOT / "../shared/data/covidfaq/questions.jsonl",
    ),
}
FEATURES = ["conf", "lexical", "semantic", "cosine", "margin", "coverage", "unknown"]
SENTENCES_PER_ARTICLE = 3
HEADINGS_PER_ARTICLE = 3
WORDS_PER_QUERY = 8
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def pseudo_questions(
    article: dict[str, Any], rows: list[dict[str, Any]], words: int = WORDS_PER_QUERY
) -> list[tuple[str, str, str]]:
    """(kind, query, source text) made from one article alone: title, headings, sentences.

    A sentence becomes a query by keeping its first WORDS_PER_QUERY words that are no stop
    words (a customer asks in a few topic words, not in the article's full sentence); the
    sentences are the first, middle and last long-enough ones, so no part of the article is
    favoured. Nothing here depends on the KB's subject or language beyond its stop list.
    """
    from worker.agent.analysis import ANALYZER

    out = [("title", article["title"], article["title"])]
    headings = []
    for r in rows:
        h = (r.get("section") or "").strip()
        if h and h.lower() != article["title"].strip().lower() and h not in headings:
            headings.append(h)
    out += [("heading", h, h) for h in headings[:HEADINGS_PER_ARTICLE]]
    candidates = []
    for part in _SENTENCE_END.split(article["text"]):
        tokens = re.findall(r"[^\W\d_][\w'-]*", part)
        kept = [w for w in tokens if ANALYZER.words(w)]
        if len(kept) >= 4:
            candidates.append((" ".join(kept[:words]), part.strip()))
    if candidates:
        n = len(candidates)
        picks = sorted({0, n // 2, n - 1})[:SENTENCES_PER_ARTICLE]
        out += [("sentence", *candidates[i]) for i in picks]
    return out


def signals(engine: Any, kb: Any, question: str) -> dict[str, float]:
    """What the engine computes for a single-turn question, as the abstention's inputs.

    conf: the engine's confidence (the default decision is conf < threshold); lexical and
    semantic: the top article's scaled BM25 score and cosine (0 where the KB's self-check
    gives the meaning no vote); cosine: the embedder's cosine of the query to the top passage
    in any case; margin: its fused score minus the
    next article's; coverage: idf share of the query's words the top passage holds; unknown:
    idf share of the query's words the KB's vocabulary lacks.
    """
    from worker.agent.analysis import analyzer_for, capped_mass
    from worker.agent.offline import CHUNKS_PER_ARTICLE, _first_per_document

    language, _, _ = engine._language(question)
    lang = language or kb.main_language
    query = kb.repair(question, lang)
    chunks = kb.search(query, limit=5, per_document=CHUNKS_PER_ARTICLE, language=language)
    passages = _first_per_document(chunks)
    out = dict.fromkeys(FEATURES, 0.0)
    out["conf"] = engine.confidence(query, passages, language)
    weights = kb.term_weights(query, lang)
    built = kb.index._index() if kb.index is not None else None
    mass = sum(weights.values())
    if weights and built is not None:
        out["unknown"] = sum(w for t, w in weights.items() if t not in built.vocab) / mass
    if not passages:
        return out
    top = passages[0]
    out["lexical"] = top.lexical
    out["semantic"] = top.semantic or 0.0
    out["margin"] = top.score - (passages[1].score if len(passages) > 1 else 0.0)
    if weights:
        present = set(analyzer_for(lang).content_terms(f"{top.title} {top.section or ''} "
                                                      f"{top.content}"))  # fmt: skip
        matched = sum(w for t, w in weights.items() if t in present)
        out["coverage"] = min(1.0, matched / capped_mass(list(weights.values())))
    if kb.embedder is not None:  # the meaning, even where the KB's self-check gives it no vote
        q, p = kb.embedder.embed([query, f"{top.title} {top.content}"])
        out["cosine"] = float(q @ p)
    out["top"] = top.external_id  # type: ignore[assignment]
    return out


def build(rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """A KB and its engine from chunk rows (the ingestion chunker's output)."""
    from bench.quality import build_memory_kb
    from worker.agent.offline import OfflineEngine

    kb = build_memory_kb(rows)
    return kb, OfflineEngine(kb)


def blanked(rows: list[dict[str, Any]], sources: list[tuple[str, str, str]]) -> list[dict]:
    """The article's chunk rows with the text its pseudo-questions were made from taken out:
    no title, no heading, none of the chosen sentences; the rest of the article stays."""
    out = []
    for r in rows:
        r = dict(r)
        for kind, _, source in sources:
            if kind == "title":
                r["title"] = ""
            elif kind == "heading" and r.get("section") == source:
                r["section"] = None
            elif kind == "sentence":
                r["content"] = r["content"].replace(source, " ")
        out.append(r)
    return out


def calibration_examples(
    articles: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    *,
    words: int = WORDS_PER_QUERY,
    blank: bool = False,
) -> tuple[list[dict], float]:
    """The KB's own labelled examples and the seconds they took: every pseudo-question asked
    of the whole KB (label 1) and of the KB rebuilt without its article (label 0).

    `blank`: the answerable side is asked of the KB whose article lacks the very text the
    question was made from (a customer's words are not the article's; the rest of the article
    must carry the match), one extra build per article."""
    started = time.perf_counter()
    by_article: dict[str, list[dict]] = {}
    for r in rows:
        by_article.setdefault(r["external_id"], []).append(r)
    kb, engine = build(rows)
    out = []
    asks = {a["id"]: pseudo_questions(a, by_article.get(a["id"], []), words) for a in articles}
    for art in articles:
        if blank:
            rest = [r for r in rows if r["external_id"] != art["id"]]
            kb, engine = build(rest + blanked(by_article.get(art["id"], []), asks[art["id"]]))
        for kind, text, _ in asks[art["id"]]:
            s = signals(engine, kb, text)
            out.append({**s, "answerable": True, "kind": kind, "hit": s.get("top") == art["id"]})
    for art in articles:
        kb_out, engine_out = build([r for r in rows if r["external_id"] != art["id"]])
        for kind, text, _ in asks[art["id"]]:
            out.append({**signals(engine_out, kb_out, text), "answerable": False, "kind": kind})
    return out, time.perf_counter() - started


def fit(examples: list[dict]) -> dict[str, Any]:
    """The per-KB decision rules fitted on its own examples: the confidence cut that maximises
    the smaller of the two rates, and a logistic model (balanced classes, ridge) on FEATURES
    with its cut chosen the same way."""
    from bench.abstain_fit import best_cut, fit_logistic, matrix

    y = np.array([e["answerable"] for e in examples], float)
    conf = matrix(examples, ["conf"])[:, 0]
    x = matrix(examples, FEATURES)
    mean, std = x.mean(0), x.std(0) + 1e-9
    w = fit_logistic((x - mean) / std, y)
    score = ((x - mean) / std) @ w[:-1]
    return {
        "conf_cut": best_cut(examples, conf),
        "weights": w,
        "mean": mean,
        "std": std,
        "logit_cut": best_cut(examples, score),
    }


def decide(model: dict[str, Any], rows: list[dict]) -> dict[str, np.ndarray]:
    """Per rule, True where the question is answered (not abstained)."""
    from bench.abstain_fit import matrix
    from worker.agent.offline import DEFAULT_THRESHOLD

    conf = matrix(rows, ["conf"])[:, 0]
    x = (matrix(rows, FEATURES) - model["mean"]) / model["std"]
    return {
        "default": conf >= DEFAULT_THRESHOLD,
        "self cut": conf >= model["conf_cut"],
        "self logistic": x @ model["weights"][:-1] >= model["logit_cut"],
    }


def ceiling(real: list[dict]) -> str:
    """The best any calibration over FEATURES could do: the cut on the confidence, and a
    logistic model with its cut, fitted on the very questions they are scored on (in-sample,
    so not reachable; an upper bound on what a KB's own examples could teach)."""
    from bench.abstain_fit import best_cut, fit_logistic, matrix
    from bench.abstain_fit import rates as pair

    y = np.array([r["answerable"] for r in real], float)
    conf = matrix(real, ["conf"])[:, 0]
    a, b = pair(real, conf, best_cut(real, conf))
    x = matrix(real, FEATURES)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    score = x @ fit_logistic(x, y)[:-1]
    c, d = pair(real, score, best_cut(real, score))
    return f"confidence cut {a:.3f} / {b:.3f}, logistic {c:.3f} / {d:.3f}"


def rates(rows: list[dict], answered: np.ndarray) -> str:
    """'abstained / answered (answered right)' for one rule on one group of questions."""
    ans = np.array([r["answerable"] for r in rows])
    right = np.array([r.get("right", False) for r in rows])
    neg = (~ans).sum()
    a = f"{(~answered[~ans]).mean():.3f}" if neg else "n/a"
    b = answered[ans].mean() if ans.any() else math.nan
    r = (answered & right)[ans].mean() if ans.any() else math.nan
    return f"{a} / {b:.3f} ({r:.3f})"


def main() -> int:
    """Fit per set and share, print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="sample_questions,sample_answers,covidfaq")
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="dump every example and question (JSONL)")
    parser.add_argument("--words", type=int, default=WORDS_PER_QUERY, help="words per sentence")
    parser.add_argument("--blank", action="store_true", help="answerable side: source blanked")
    args = parser.parse_args()
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    logging.disable(logging.INFO)
    from bench.abstain_fit import auc
    from bench.quality import chunk_articles, load_kb, load_questions, removed_ids

    dump = args.out.open("w") if args.out else None
    table = ["| set | split | share | rule | unanswerable abstained / answerable answered "
             "(answered right) |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name in args.sets.split(","):
        kb_path, q_path = SETS[name]
        if not kb_path.exists():
            continue
        everything, questions = load_kb(kb_path), load_questions(q_path)
        for share in (0.0, args.share):
            removed = removed_ids(everything, share, args.seed)
            articles = [a for a in everything if a["id"] not in removed]
            rows = chunk_articles(articles, 120)
            examples, seconds = calibration_examples(
                articles, rows, words=args.words, blank=args.blank
            )
            model = fit(examples)
            pos = [e["conf"] for e in examples if e["answerable"]]
            neg = [e["conf"] for e in examples if not e["answerable"]]
            print(
                f"{name} {share:.0%} removed: {len(articles)} articles, {len(examples)} "
                f"examples in {seconds:.1f} s; pseudo conf median pos {np.median(pos):.3f} "
                f"neg {np.median(neg):.3f}, AUC {auc(pos, neg):.3f}; conf cut "
                f"{model['conf_cut']:.3f}; logistic w "
                f"{np.round(model['weights'], 2).tolist()} cut {model['logit_cut']:.3f}",
                flush=True,
            )
            kb, engine = build(rows)
            real = []
            for q in questions:
                relevant = set(q["relevant_ids"]) - removed
                s = signals(engine, kb, q["question"])
                real.append(
                    {
                        **s,
                        "answerable": bool(relevant),
                        "right": s.get("top") in relevant,
                        "split": q.get("split", "all"),
                    }  # fmt: skip
                )
            rp = [r["conf"] for r in real if r["answerable"]]
            rn = [r["conf"] for r in real if not r["answerable"]]
            if rn:
                print(
                    f"  real conf median answerable {np.median(rp):.3f} unanswerable "
                    f"{np.median(rn):.3f}, AUC {auc(rp, rn):.3f}",
                    flush=True,
                )
            if rn:
                print(f"  bound on the real questions themselves: {ceiling(real)}", flush=True)
            if dump:
                for e in examples:
                    dump.write(json.dumps({"set": name, "share": share, "pseudo": True, **e}))
                    dump.write("\n")
                for r in real:
                    dump.write(json.dumps({"set": name, "share": share, "pseudo": False, **r}))
                    dump.write("\n")
            for split in sorted({r["split"] for r in real}):
                group = [r for r in real if r["split"] == split]
                for rule, answered in decide(model, group).items():
                    table.append(
                        f"| {name} | {split} | {share:.0%} | {rule} | {rates(group, answered)} |"
                    )
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
