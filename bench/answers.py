"""Answer quality of the offline engine: does the reply contain the fact that answers the question?

    python bench/answers.py [KB] [GOLD] [--misses tuning|held-out|all] [--max-words 120]

KB defaults to data/sample_kb and GOLD to bench/sample_answers.jsonl: JSONL of {"question",
"relevant_ids", "key_fact", "split"}, where `key_fact` is a regex (case-insensitive) that a
correct answer must contain (null, with empty `relevant_ids`: a question the KB does not answer,
whose only correct reply is the abstention) and `split` is "tuning", "tuning-2", "held-out" or
"held-out-2" (the second held-out split, written later, before the answer-composition round it
checks; "tuning-2", written in session 6 for the composition round, asks for facts deep inside
an article: a number, a condition or a step far from the article's opening; "held-out-3", 37
questions written in session 7 before the ranking round, never run while tuning). An
optional "history" lists the customer's earlier messages, oldest first: the question is then a
follow-up ("and what does it cost?") asked after them. Retrieval
metrics (see bench/quality.py) say whether the right article was found; this says whether the
sentences the engine quoted from it actually answer. Reported per split, so tuning on one half
and checking the other exposes overfitting:

- key fact: share of questions whose reply contains the key fact (an abstention counts as a miss;
  for a question the KB does not answer, the abstention is the hit)
- right article: share whose first citation is one of the question's `relevant_ids`
- in passages: share whose key fact is somewhere in the chunks the engine quotes from (the
  retrieved chunks of the top 3 articles), the ceiling selection can reach without better retrieval
- abstain: share of questions the engine declined to answer
- words/answer: mean length of the non-abstaining replies (a longer reply contains more facts by
  chance, so a hit rate only counts alongside it)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("tuning", "tuning-2", "held-out", "held-out-2", "held-out-3")
_COUNTS = ("n", "hit", "right", "ceiling", "abstain", "words")


def _normalise(text: str) -> str:
    """Markdown emphasis stripped and whitespace collapsed, so the regex sees the visible text."""
    return " ".join(re.sub(r"(\*\*|__|`)", "", text).split())


def run(
    kb: Any, gold: list[dict[str, Any]], show_misses: str | None
) -> dict[str, dict[str, float]]:
    """Ask every gold question; count key-fact hits, ceilings and abstentions per split."""
    from worker.agent.base import Turn
    from worker.agent.offline import CHUNKS_PER_ARTICLE, OfflineEngine

    engine = OfflineEngine(kb)
    stats: dict[str, dict[str, float]] = {}
    for q in gold:
        split = q.get("split", "tuning")
        row = stats.setdefault(split, dict.fromkeys(_COUNTS, 0))
        history = [Turn("user", text) for text in q.get("history") or []]
        reply = engine.answer(q["question"], history=history, attachments=[], emit=lambda *_: None)
        abstained = reply.escalation_reason == "low_confidence"
        if q.get("key_fact") is None:  # the KB does not answer it: abstaining is right
            key = re.compile(r"(?!)")
            hit = abstained
        else:
            key = re.compile(q["key_fact"], re.I)
            hit = not abstained and bool(key.search(_normalise(reply.text)))
        query = reply.metadata.get("query") or q["question"]
        chunks = kb.search(query, limit=3, per_document=CHUNKS_PER_ARTICLE)
        row["n"] += 1
        row["hit"] += hit
        row["abstain"] += abstained
        row["right"] += (
            (bool(reply.sources) and reply.sources[0].external_id in q["relevant_ids"])
            if q["relevant_ids"]
            else abstained
        )
        row["words"] += 0 if abstained else len(reply.text.split())
        row["ceiling"] += (
            any(key.search(_normalise(p.content)) for p in chunks) if q["relevant_ids"] else 1
        )
        if not hit and show_misses in (split, "all"):
            cited = [s.external_id for s in reply.sources]
            earlier = f" after {q['history']!r}" if q.get("history") else ""
            print(f"- [{split}] {q['question']!r}{earlier} want /{q['key_fact']}/ cited {cited}")
            print("    " + reply.text.replace("\n", "\n    "))
    return stats


def report(stats: dict[str, dict[str, float]]) -> str:
    """One markdown table, a row per split plus the total."""
    rows = [
        "| split | questions | key fact | right article | in passages | abstain | words/answer |",
        "|" + " --- |" * 7,
    ]
    total = dict.fromkeys(_COUNTS, 0)
    names = [s for s in SPLITS if s in stats] + sorted(set(stats) - set(SPLITS))
    for name in [*names, "all"]:
        row = stats.get(name, total)
        if name != "all":
            for k in total:
                total[k] += row[k]
        n = max(row["n"], 1)
        answered = max(row["n"] - row["abstain"], 1)
        rows.append(
            f"| {name} | {int(row['n'])} | {row['hit'] / n:.3f} | {row['right'] / n:.3f} "
            f"| {row['ceiling'] / n:.3f} "
            f"| {row['abstain'] / n:.3f} | {row['words'] / answered:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the in-memory KB, ask, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kb", type=Path, nargs="?", default=ROOT / "data" / "sample_kb")
    parser.add_argument("gold", type=Path, nargs="?", default=ROOT / "bench/sample_answers.jsonl")
    parser.add_argument("--max-words", type=int, default=120, help="chunk size in words")
    parser.add_argument(
        "--misses", choices=(*SPLITS, "all"), help="print the missed answers of this split"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    sys.path.insert(0, str(ROOT))
    from bench.quality import build_memory_kb, chunk_articles, load_kb

    with args.gold.open(encoding="utf-8") as fh:
        gold = [json.loads(line) for line in fh if line.strip()]
    kb = build_memory_kb(chunk_articles(load_kb(args.kb), args.max_words))
    print(f"{len(gold)} questions over {args.kb.name}")
    print(report(run(kb, gold, args.misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
