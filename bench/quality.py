"""Retrieval and abstention quality of the offline engine on a labelled question set.

    python bench/quality.py KB QUESTIONS [--limit-k 10] [--store bm25s|postgres] [--misses N]

KB is a JSONL file of {"id", "title", "text", "metadata"} (id = external id) or a folder of
markdown articles (external id = path without .md, title = first "# " line). QUESTIONS is JSONL
of {"question", "relevant_ids"}; an empty relevant_ids marks a question the KB cannot answer.
Metrics are document-level, by external id.
"""

from __future__ import annotations

import argparse
import json
import os
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
        for row in rows:
            keep = ("position", "title", "section", "content")
            session.add(KBChunk(document_id=ids[row["document_id"]], **{k: row[k] for k in keep}))
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


def evaluate(kb: Any, questions: list[dict[str, Any]], limit_k: int, misses: int) -> dict:
    """Recall@1/5/k, MRR@k and abstention, using the real engine's decision."""
    from worker.agent.offline import OfflineEngine

    engine = OfflineEngine(kb)
    hits = {1: 0, 5: 0, limit_k: 0}
    mrr = 0.0
    answerable = abstain_answerable = no_answer = abstain_no_answer = 0
    started = time.perf_counter()
    for q in questions:
        relevant = set(q["relevant_ids"])
        reply = engine.answer(q["question"], history=[], attachments=[], emit=lambda *_: None)
        abstained = reply.escalation_reason == "low_confidence"
        if not relevant:
            no_answer += 1
            abstain_no_answer += abstained
            continue
        answerable += 1
        abstain_answerable += abstained
        rank = first_relevant_rank(kb, q["question"], relevant, limit_k, misses > 0)
        misses -= rank != 0
        if rank is None:
            continue
        mrr += 1.0 / (rank + 1)
        for k in hits:
            hits[k] += rank < k
    elapsed = time.perf_counter() - started
    n = max(answerable, 1)
    return {
        "answerable": answerable,
        "no_answer": no_answer,
        "recall": {k: hits[k] / n for k in sorted(hits)},
        "mrr": mrr / n,
        "abstain_rate": (abstain_answerable + abstain_no_answer) / max(len(questions), 1),
        "abstain_answerable": abstain_answerable / n,
        "abstain_no_answer": abstain_no_answer / no_answer if no_answer else None,
        "ms_per_question": 1000 * elapsed / max(len(questions), 1),
    }


def report(name: str, limit_k: int, m: dict) -> str:
    """One markdown table."""
    rec = m["recall"]
    no_ans = "n/a" if m["abstain_no_answer"] is None else f"{m['abstain_no_answer']:.3f}"
    header = (
        f"| set | answerable | R@1 | R@5 | R@{limit_k} | MRR@{limit_k} | abstain (all) "
        "| abstain (answerable) | no-answer | correctly abstained | ms/question |"
    )
    row = (
        f"| {name} | {m['answerable']} | {rec[1]:.3f} | {rec[5]:.3f} | {rec[limit_k]:.3f} "
        f"| {m['mrr']:.3f} | {m['abstain_rate']:.3f} | {m['abstain_answerable']:.3f} "
        f"| {m['no_answer']} | {no_ans} | {m['ms_per_question']:.1f} |"
    )
    return "\n".join([header, "|" + " --- |" * 11, row])


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the KB, evaluate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kb", type=Path)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--limit-k", type=int, default=10)
    parser.add_argument("--store", choices=("bm25s", "postgres"), default="bm25s")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@localhost:5432/postgres")
    parser.add_argument("--max-words", type=int, default=120, help="chunk size in words")
    parser.add_argument("--misses", type=int, default=0, help="print this many top-1 misses")
    args = parser.parse_args(argv)
    os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
    sys.path.insert(0, str(ROOT))
    articles = load_kb(args.kb)
    rows = chunk_articles(articles, args.max_words)
    questions = load_questions(args.questions)
    print(f"{len(articles)} articles, {len(rows)} chunks, {len(questions)} questions")
    if args.store == "bm25s":
        metrics = evaluate(build_memory_kb(rows), questions, args.limit_k, args.misses)
    else:
        from bench.retrieval import scratch_database

        with scratch_database(args.pg_admin_url, "helpline_quality_bench") as url:
            kb = build_postgres_kb(articles, rows, url)
            metrics = evaluate(kb, questions, args.limit_k, args.misses)
    print(report(f"{args.kb.name} ({args.store})", args.limit_k, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
