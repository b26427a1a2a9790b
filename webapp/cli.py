"""Flask CLI commands: `flask --app wsgi db upgrade` (and the knowledge-base commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

db_cli = AppGroup("db", help="Database migrations (Alembic).")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from models.migrate import upgrade as run_upgrade

    run_upgrade(revision=revision)
    click.echo(f"database upgraded to {revision}")


@db_cli.command("current")
def current() -> None:
    """Show the applied revision."""
    from alembic import command

    from models.migrate import alembic_config

    command.current(alembic_config())


kb_cli = AppGroup("kb", help="Knowledge base: import documents, search, stats.")

KB_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}


def _front_matter(raw: bytes) -> tuple[dict, bytes]:
    """A Markdown file's YAML front matter (`---` … `---` at the top) and the body after it.

    Help centres exported from most tools keep the article's address (`url`) and title there;
    the body is indexed without it so the YAML never shows up in a citation."""
    import yaml

    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    if not text.startswith("---"):
        return {}, raw
    lines = text.splitlines(keepends=True)
    if lines[0].strip() != "---":
        return {}, raw
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, raw
    try:
        meta = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError:
        return {}, raw  # not front matter after all: index the file as it is
    if not isinstance(meta, dict):
        return {}, raw
    return {str(k): v for k, v in meta.items()}, "".join(lines[end + 1 :]).encode()


def _file_item(file: Path, external_id: str) -> dict:
    """One file as upsert_document arguments; Markdown's front matter becomes metadata
    (`title` the document's title, everything else, `url` included, its metadata)."""
    raw = file.read_bytes()
    item: dict = {"raw": raw, "filename": file.name, "external_id": external_id}
    if file.suffix.lower() in MARKDOWN_SUFFIXES:
        meta, body = _front_matter(raw)
        if meta:
            title = meta.pop("title", None)
            item["raw"] = body
            item["metadata"] = json_safe(meta)
            if isinstance(title, str) and title.strip():
                item["title"] = title.strip()
    return item


def json_safe(value: Any) -> Any:
    """YAML gives dates and other objects JSON columns cannot hold: keep them as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _collect(paths: tuple[str, ...]) -> list[dict]:
    """Files, folders (recursively) and JSONL files into upsert_document arguments."""
    items: list[dict] = []
    for arg in paths:
        path = Path(arg)
        if not path.exists():
            raise click.BadParameter(f"{arg} does not exist", param_hint="PATH")
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() == ".jsonl":
                    items += _jsonl(file)
                elif file.suffix.lower() in KB_SUFFIXES and file.name.lower() != "readme.md":
                    ext_id = file.relative_to(path).with_suffix("").as_posix()
                    items.append(_file_item(file, ext_id))
        elif path.suffix.lower() == ".jsonl":
            items += _jsonl(path)
        else:
            items.append(_file_item(path, path.with_suffix("").name))
    return items


def _jsonl(path: Path) -> list[dict]:
    import json

    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise click.ClickException(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(row, dict) or not str(row.get("text") or "").strip():
            raise click.ClickException(f"{path}:{n}: each line needs a 'text'")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise click.ClickException(f"{path}:{n}: 'metadata' must be an object")
        if row.get("url") is not None:  # the article's address, top level or in metadata
            metadata = {**metadata, "url": str(row["url"])}
        out.append(
            {
                "text": str(row["text"]),
                "title": str(row.get("title") or ""),
                "metadata": metadata,
                "external_id": str(row["id"]) if row.get("id") is not None else None,
            }
        )
    return out


@kb_cli.command("import")
@click.argument("paths", nargs=-1, required=True)
@click.option("--wait/--no-wait", default=True, help="Wait until the worker has indexed them.")
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait.")
def kb_import(paths: tuple[str, ...], wait: bool, timeout: int) -> None:
    """Import files, folders and JSONL files ({"id","title","text","url","metadata"} per line).

    Markdown front matter gives a file's `title` and `url` (the article's address, linked from
    citations). A file or line is "skipped" when it is refused (too large, a type that has no
    text, empty): nothing is stored for it and the reason is printed; the others go on."""
    from models import jobs
    from models.db import new_session
    from models.errors import DomainError
    from models.settings import get_settings
    from webapp.kb import upsert_document

    items = _collect(paths)
    db = new_session()
    ids, queued, failed = [], [], 0
    limit = get_settings().max_upload_bytes
    try:
        with click.progressbar(
            items,
            label="storing",
            show_pos=True,
            show_percent=True,
            item_show_func=lambda item: item and str(item.get("external_id") or "")[:40],
        ) as bar:
            for item in bar:
                try:
                    doc, changed = upsert_document(db, **item, max_bytes=limit)
                except DomainError as err:
                    failed += 1
                    click.echo(f"\nskipped {item.get('external_id')}: {err.message}", err=True)
                    continue
                db.commit()
                ids.append(doc.id)
                if changed:
                    queued.append(doc.id)
    finally:
        db.close()
    sent = sum(jobs.send_ingest(doc_id) for doc_id in queued)
    click.echo(
        f"{len(ids)} documents stored: {len(queued)} new or changed (sent to the worker: "
        f"{sent}), {len(ids) - len(queued)} unchanged (same title and content, not re-indexed)"
    )
    if failed:
        click.echo(
            f"{failed} skipped: refused and not stored (the reason is on each 'skipped' line "
            "above); fix the file and import again"
        )
    if wait and queued:
        _wait_indexed(queued, timeout)


def _wait_indexed(ids: list[str], timeout: int) -> None:
    """Progress bar over the worker's indexing, read from the database."""
    import time

    from sqlalchemy import func, select

    from models.db import new_session
    from models.kb import KBDocument

    deadline = time.monotonic() + timeout
    done = 0
    with click.progressbar(length=len(ids), label="indexing", show_pos=True) as bar:
        while done < len(ids):
            db = new_session()
            try:
                now = (
                    db.scalar(
                        select(func.count()).where(
                            KBDocument.id.in_(ids), KBDocument.status.in_(("done", "failed"))
                        )
                    )
                    or 0
                )
            finally:
                db.close()
            bar.update(now - done)
            done = now
            if done >= len(ids):
                break
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"only {done} of {len(ids)} indexed after {timeout}s: is a worker running "
                    "(`make run` starts one with the Procfile)?"
                )
            time.sleep(0.2)
    db = new_session()
    try:
        broken = db.execute(
            select(KBDocument.external_id, KBDocument.id, KBDocument.error).where(
                KBDocument.id.in_(ids), KBDocument.status == "failed"
            )
        ).all()
    finally:
        db.close()
    for external_id, doc_id, error in broken:
        click.echo(f"failed to index {external_id or doc_id}: {error}", err=True)
    click.echo(f"{len(ids) - len(broken)} indexed, {len(broken)} failed")


@kb_cli.command("search")
@click.argument("query")
@click.option("--limit", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def kb_search(query: str, limit: int, as_json: bool) -> None:
    """Ranked passages for QUERY (answered by a running worker)."""
    import json

    from models import jobs

    try:
        rows = jobs.search(query, limit, timeout=15)
    except Exception as exc:
        raise click.ClickException(
            f"no worker answered ({type(exc).__name__}): is one running?"
        ) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        meta = row["metadata"]
        click.echo(
            f"{row['rank']:>2}. {row['relevance_score']:.3f}  {meta.get('external_id')}  "
            f"{meta.get('title')}"
        )


@kb_cli.command("stats")
def kb_stats() -> None:
    """Documents by status, chunks, and the knowledge-base version."""
    from sqlalchemy import func, select

    from models.db import new_session
    from models.kb import KBChunk, KBDocument
    from models.kbstate import current_version

    db = new_session()
    try:
        by_status = dict(
            db.execute(select(KBDocument.status, func.count()).group_by(KBDocument.status)).all()
        )
        chunks = db.scalar(select(func.count()).select_from(KBChunk)) or 0
        version = current_version(db)
    finally:
        db.close()
    click.echo(
        f"documents: {sum(by_status.values())} "
        + " ".join(f"{k}={v}" for k, v in sorted(by_status.items()))
    )
    click.echo(f"chunks: {chunks}")
    click.echo(f"version: {version}")


def register_cli(app: Flask) -> None:
    """Attach the command groups."""
    app.cli.add_command(db_cli)
    app.cli.add_command(kb_cli)
