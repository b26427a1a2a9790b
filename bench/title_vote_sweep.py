"""Ranking on the tuning sets at several title-vote weights (session 7, bench/README.md).

    python bench/title_vote_sweep.py [--weights 0,0.05,0.1,0.15,0.2,0.25,0.35]

R@1 / MRR@10 of `KnowledgeBase.search` (document level, answerable questions) on the sample
KB's tuning questions (sample_answers `tuning` and `tuning-2`, sample_questions) and on
covidfaq (`../shared/data/covidfaq`, skipped when absent). The held-out splits are never asked:
the weight is chosen on these alone. `WordLlamaEmbedder.title_weight` is set per row.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COVIDFAQ = ROOT.parent / "shared" / "data" / "covidfaq"
TUNING = ("tuning", "tuning-2")


def question_sets() -> list[tuple[Path, dict[str, list[dict[str, Any]]]]]:
    """(KB path, {set name: answerable questions}) for every set this sweep reads."""
    from bench.quality import load_questions

    answers = load_questions(ROOT / "bench" / "sample_answers.jsonl")
    sample = {
        split: [q for q in answers if q.get("split") == split and q["relevant_ids"]]
        for split in TUNING
    }
    sample["sample_questions"] = [
        q for q in load_questions(ROOT / "bench" / "sample_questions.jsonl") if q["relevant_ids"]
    ]
    sets = [(ROOT / "data" / "sample_kb", sample)]
    if (COVIDFAQ / "kb.jsonl").exists():
        covid = [q for q in load_questions(COVIDFAQ / "questions.jsonl") if q["relevant_ids"]]
        sets.append((COVIDFAQ / "kb.jsonl", {"covidfaq": covid}))
    return sets


def measure(sets: list[tuple[Path, dict[str, list[dict[str, Any]]]]]) -> dict[str, str]:
    """R@1 / MRR@10 per set, formatted, for the weight currently set."""
    from bench.quality import build_memory_kb, chunk_articles, load_kb

    out = {}
    for kb_path, named in sets:
        kb = build_memory_kb(chunk_articles(load_kb(kb_path), 120))
        for name, questions in named.items():
            first = mrr = 0.0
            for q in questions:
                ranked = [p.external_id for p in kb.search(q["question"], limit=10)]
                rank = next((i for i, e in enumerate(ranked) if e in q["relevant_ids"]), None)
                first += rank == 0
                mrr += 0.0 if rank is None else 1.0 / (rank + 1)
            out[name] = f"{first / len(questions):.3f} / {mrr / len(questions):.3f}"
    return out


def main(argv: list[str] | None = None) -> int:
    """Print one markdown row per weight."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="0,0.05,0.1,0.15,0.2,0.25,0.35")
    args = parser.parse_args(argv)
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    logging.disable(logging.INFO)
    sys.path.insert(0, str(ROOT))
    from worker.agent.embeddings import WordLlamaEmbedder

    sets = question_sets()
    names = [name for _, named in sets for name in named]
    print("| title weight | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 1) + "|")
    for weight in (float(w) for w in args.weights.split(",")):
        WordLlamaEmbedder.title_weight = weight
        row = measure(sets)
        print(f"| {weight:g} | " + " | ".join(row[n] for n in names) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
