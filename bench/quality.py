"""Retrieval and abstention quality of the offline engine on a labelled question set.

    python bench/quality.py KB QUESTIONS [--limit-k 10] [--store bm25s|postgres] [--misses N]
                            [--remove-share 0.3] [--seed 7]

KB is a JSONL file of {"id", "title", "text", "metadata"} (id = external id) or a folder of
markdown articles (external id = path without .md, title = first "# " line). QUESTIONS is JSONL
of {"question", "relevant_ids"} (optionally "split"); an empty relevant_ids marks a question the
KB cannot answer. Metrics are document-level, by external id, per split when the file has them.

Abstention is measured twice, with the real engine's decision at the default threshold: on the
whole KB, and after removing a seeded share of the articles (`--remove-share`), which turns every
question whose relevant articles were all removed into one the KB cannot answer. Reported:

- unanswerable abstained: share of the questions the KB cannot answer that got the abstention
- answerable answered: share of the answerable ones that got an answer (not the abstention)
- answered right: share of the answerable ones answered *and* citing a relevant article first
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_kb(path: Path) -> list[dict[str, Any]]:
    """Articles as {"id", "title", "text"} from a JSONL file or a folder of .md files."""
    if path.is_dir():
        articles = []
        for md in sorted(path.rglob("*.md")):
            lines = md.read_text(encoding="utf-8").splitlines()
            title_at = next((i for i, ln in enumerate(lines) if ln.startswith("# ")), None)
            title = lines[title_at][2:].strip() if title_at is not None else md.stem
            body = lines[:title_at] + lines[title_at + 1 :] if title_at is not None else lines
            ext_id = md.relative_to(path).with_suffix("").as_posix()
            articles.append({"id": ext_id, "title": title, "text": "\n".join(body).strip()})
        return articles
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_questions(path: Path) -> list[dict[str, Any]]:
    """Questions with their relevant external ids."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def chunk_articles(articles: list[dict[str, Any]], max_words: int) -> list[dict[str, Any]]:
    """Chunk rows (the ingestion chunker's output) ready for either store."""
    from worker.ingest.chunking import chunk_text

    rows = []
    for art in articles:
        pairs = chunk_text(art["text"], title=art["title"], max_words=max_words)
        for position, (section, content) in enumerate(pairs or [(None, art["text"])]):
            rows.append(
                {
                    "chunk_id": f"{art['id']}#{position}",
                    "document_id": art["id"],
                    "external_id": art["id"],
                    "title": art["title"],
                    "section": section,
                    "position": position,
                    "content": content,
                }
            )
    return rows


def build_memory_kb(rows: list[dict[str, Any]]) -> Any:
    """The bm25s store, in memory."""
    from worker.agent.bm25 import documents_from_rows
    from worker.agent.retrieval import KnowledgeBase

    return KnowledgeBase.from_documents(documents_from_rows(rows))


def build_postgres_kb(articles: list[dict[str, Any]], rows: list[dict[str, Any]], url: str) -> Any:
    """The PostgreSQL store: tables, full-text column and rows in a scratch database."""
    from sqlalchemy.orm import Session

    from models import Base, KBChunk, KBDocument, KBState
    from models.db import make_engine
    from worker.agent.language import article_language
    from worker.agent.pgstore import ensure_pg_fts
    from worker.agent.retrieval import KnowledgeBase

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        ensure_pg_fts(conn)
    with Session(engine) as session, session.begin():
        ids = {}
        for art in articles:
            doc = KBDocument(external_id=art["id"], title=art["title"], text=art["text"])
            session.add(doc)
            session.flush()
            ids[art["id"]] = doc.id
        texts: dict[str, list[str]] = {}
        for row in rows:
            texts.setdefault(row["document_id"], []).append(row["content"])
        languages = {doc_id: article_language(parts) for doc_id, parts in texts.items()}
        for row in rows:  # tagged as ingestion tags them: PostgreSQL parses each by its language
            keep = {k: row[k] for k in ("position", "title", "section", "content")}
            language = languages[row["document_id"]]
            session.add(KBChunk(document_id=ids[row["document_id"]], language=language, **keep))
        session.add(KBState(id=1, version=1))
    engine.dispose()
    return KnowledgeBase(store="postgres", database_url=url, use_redis=False)


def first_relevant_rank(
    kb: Any, question: str, relevant: set[str], limit_k: int, show: bool
) -> int | None:
    """0-based rank of the first relevant article in the top `limit_k`, or None."""
    ranked = [p.external_id for p in kb.search(question, limit=limit_k)]
    rank = next((i for i, ext in enumerate(ranked) if ext in relevant), None)
    if rank != 0 and show:
        print(f"  rank {rank}: {question!r} -> {ranked[:3]} want {sorted(relevant)}")
    return rank


def removed_ids(articles: list[dict[str, Any]], share: float, seed: int) -> set[str]:
    """A seeded random `share` of the article ids: the same articles on every run and store."""
    ids = sorted(a["id"] for a in articles)
    return set(random.Random(seed).sample(ids, round(share * len(ids)))) if share > 0 else set()


def evaluate(
    kb: Any, questions: list[dict[str, Any]], limit_k: int, misses: int, removed: set[str]
) -> dict[str, dict]:
    """Recall@1/5/k, MRR@k and both abstention rates per split, using the real engine.

    A question is answerable when one of its relevant articles is still in the KB (`removed`
    are not); retrieval metrics are over the answerable ones only.
    """
    from worker.agent.offline import OfflineEngine

    engine = OfflineEngine(kb)
    out: dict[str, dict] = {}
    for q in questions:
        relevant = set(q["relevant_ids"]) - removed
        m = out.setdefault(
            q.get("split", "all"),
            {
                "n": 0,
                "answerable": 0,
                "no_answer": 0,
                "hits": {1: 0, 5: 0, limit_k: 0},
                "mrr": 0.0,
                "answered": 0,
                "answered_right": 0,
                "abstained_no_answer": 0,
                "seconds": 0.0,
            },
        )
        m["n"] += 1
        started = time.perf_counter()
        reply = engine.answer(q["question"], history=[], attachments=[], emit=lambda *_: None)
        m["seconds"] += time.perf_counter() - started
        abstained = reply.escalation_reason == "low_confidence"
        if not relevant:
            m["no_answer"] += 1
            m["abstained_no_answer"] += abstained
            if not abstained and misses > 0:
                print(f"  answered, should abstain: {q['question']!r}")
            continue
        m["answerable"] += 1
        m["answered"] += not abstained
        first = reply.sources[0].external_id if reply.sources else None
        m["answered_right"] += not abstained and first in relevant
        if abstained and misses > 0:
            print(f"  abstained, answerable: {q['question']!r} want {sorted(relevant)}")
        rank = first_relevant_rank(kb, q["question"], relevant, limit_k, misses > 0)
        misses -= rank != 0
        if rank is None:
            continue
        m["mrr"] += 1.0 / (rank + 1)
        for k in m["hits"]:
            m["hits"][k] += rank < k
    return out


def _rate(count: float, total: int) -> str:
    return f"{count / total:.3f}" if total else "n/a"


def report(name: str, limit_k: int, by_split: dict[str, dict]) -> str:
    """One markdown table, a row per split."""
    header = (
        f"| set | split | answerable | R@1 | R@5 | R@{limit_k} | MRR@{limit_k} | unanswerable "
        "| unanswerable abstained | answerable answered | answered right | ms/question |"
    )
    rows = [header, "|" + " --- |" * 12]
    for split, m in sorted(by_split.items()):
        a = m["answerable"]
        rec = " | ".join(_rate(m["hits"][k], a) for k in sorted(m["hits"]))
        rows.append(
            f"| {name} | {split} | {a} | {rec} | {_rate(m['mrr'], a)} | {m['no_answer']} "
            f"| {_rate(m['abstained_no_answer'], m['no_answer'])} | {_rate(m['answered'], a)} "
            f"| {_rate(m['answered_right'], a)} | {1000 * m['seconds'] / max(m['n'], 1):.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the KB, evaluate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kb", type=Path)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--limit-k", type=int, default=10)
    parser.add_argument("--store", choices=("bm25s", "postgres"), default="bm25s")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@localhost:5432/postgres")
    parser.add_argument(
        "--pg-scratch", default="helpline_quality_bench", help="scratch database name (dropped)"
    )
    parser.add_argument("--max-words", type=int, default=120, help="chunk size in words")
    parser.add_argument("--misses", type=int, default=0, help="print this many top-1 misses")
    parser.add_argument(
        "--remove-share", type=float, default=0.3, help="share of articles removed (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=7, help="which articles are removed")
    args = parser.parse_args(argv)
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    sys.path.insert(0, str(ROOT))
    everything = load_kb(args.kb)
    questions = load_questions(args.questions)
    shares = [0.0] + ([args.remove_share] if args.remove_share > 0 else [])
    for share in shares:
        removed = removed_ids(everything, share, args.seed)
        articles = [a for a in everything if a["id"] not in removed]
        rows = chunk_articles(articles, args.max_words)
        print(
            f"{len(articles)} articles ({len(removed)} removed, seed {args.seed}), "
            f"{len(rows)} chunks, {len(questions)} questions"
        )
        if args.store == "bm25s":
            kb = build_memory_kb(rows)
            metrics = evaluate(kb, questions, args.limit_k, args.misses, removed)
        else:
            from bench.retrieval import scratch_database

            with scratch_database(args.pg_admin_url, args.pg_scratch) as url:
                kb = build_postgres_kb(articles, rows, url)
                metrics = evaluate(kb, questions, args.limit_k, args.misses, removed)
        name = f"{args.kb.name} ({args.store}, {share:.0%} removed)"
        print(report(name, args.limit_k, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
