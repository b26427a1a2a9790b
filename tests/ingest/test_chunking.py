"""Chunker: section boundaries, sentence packing, overlap, meta and serialisation."""

from __future__ import annotations

import copy

import pytest
from haystack import Document

from worker.ingest.chunking import SectionSentenceSplitter, chunk_text


def _sentences(n: int, words: int = 10, prefix: str = "S") -> str:
    filler = " ".join(["word"] * (words - 2))
    return " ".join(f"{prefix}{i} {filler} end." for i in range(n))


def test_markdown_sections() -> None:
    text = (
        "Intro sentence here.\n\n# Refunds\nRefund within 30 days. Ask in the app.\n"
        "## How\n- Open app\n- Tap help\n\n## Empty\n# Shipping\nOrders ship in two days."
    )
    assert chunk_text(text, title="Guide") == [
        ("Guide", "Intro sentence here."),
        ("Refunds", "Refund within 30 days. Ask in the app."),
        ("How", "- Open app\n- Tap help"),
        ("Shipping", "Orders ship in two days."),
    ]
    assert chunk_text("Just text.") == [(None, "Just text.")]


def test_title_like_lines_start_sections_in_plain_text() -> None:
    text = (
        "Refund policy\nYou can ask for a refund within 30 days. It is free.\n\n"
        "Shipping\nOrders ship within two business days."
    )
    assert [s for s, _ in chunk_text(text)] == ["Refund policy", "Shipping"]


def test_short_line_runs_are_not_headings() -> None:
    text = "Steps below.\nOpen the app\nTap Help\nThen wait for the confirmation email to arrive."
    assert [s for s, _ in chunk_text(text)] == [None]


def test_max_words_and_overlap() -> None:
    text = _sentences(30)  # 30 sentences of 10 words
    chunks = [c for _, c in chunk_text(text, max_words=40, overlap_sentences=1)]
    assert len(chunks) > 5
    for content in chunks:
        assert len(content.split()) <= 40
        assert content.endswith("end.")  # whole sentences only
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        last_sentence = "S" + prev.rsplit(" S", 1)[-1]
        assert nxt.startswith(last_sentence)  # one sentence of overlap
    joined = " ".join(chunks)
    assert all(f"S{i} " in joined for i in range(30))


def test_no_overlap() -> None:
    chunks = [c for _, c in chunk_text(_sentences(12), max_words=40, overlap_sentences=0)]
    assert [c.split()[0] for c in chunks] == ["S0", "S4", "S8"]
    assert [len(c.split()) for c in chunks] == [40, 40, 40]


def test_overlong_sentence_is_cut_by_words() -> None:
    text = " ".join(["long"] * 250) + "."
    chunks = [c for _, c in chunk_text(text, max_words=100, overlap_sentences=0, min_words=0)]
    assert [len(c.split()) for c in chunks] == [100, 100, 50]


def test_tiny_tail_merges_into_previous_chunk() -> None:
    text = _sentences(4) + " Tiny tail."
    chunks = chunk_text(text, max_words=40, overlap_sentences=0)
    assert len(chunks) == 1
    assert chunks[0][1].endswith("Tiny tail.")


def test_component_meta_position_and_no_mutation() -> None:
    doc = Document(
        content="# A\n" + _sentences(10) + "\n# B\nShort section.",
        meta={"title": "Doc", "tags": ["x"], "document_id": "d1"},
    )
    before = copy.deepcopy(doc.to_dict())
    splitter = SectionSentenceSplitter(max_words=40, overlap_sentences=1)
    out = splitter.run(documents=[doc, Document(content="  ")])["documents"]
    assert doc.to_dict() == before
    assert [d.meta["position"] for d in out] == list(range(len(out)))
    assert out[0].meta["section"] == "A" and out[-1].meta["section"] == "B"
    assert all(d.meta["document_id"] == "d1" and d.meta["source_id"] == doc.id for d in out)
    out[0].meta["tags"].append("y")
    assert doc.meta["tags"] == ["x"]


def test_component_serialisation_round_trip() -> None:
    splitter = SectionSentenceSplitter(max_words=80, overlap_sentences=2, min_words=5)
    data = splitter.to_dict()
    assert data["init_parameters"] == {"max_words": 80, "overlap_sentences": 2, "min_words": 5}
    clone = SectionSentenceSplitter.from_dict(data)
    assert (clone.max_words, clone.overlap_sentences, clone.min_words) == (80, 2, 5)


def test_component_in_pipeline() -> None:
    from haystack import Pipeline

    pipe = Pipeline()
    pipe.add_component("split", SectionSentenceSplitter(max_words=50))
    result = pipe.run({"split": {"documents": [Document(content="# H\nHello there. Bye.")]}})
    assert [d.content for d in result["split"]["documents"]] == ["Hello there. Bye."]
    # haystack 3 refuses to deserialise classes from modules that are not allow-listed
    loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["worker.ingest.chunking"])
    assert loaded.get_component("split").max_words == 50


@pytest.mark.parametrize("kwargs", [{"max_words": 0}, {"overlap_sentences": -1}, {"min_words": -2}])
def test_invalid_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SectionSentenceSplitter(**kwargs)


def test_paragraphs_keep_their_lines() -> None:
    """A paragraph's sentences share a line (hard-wrapped ones too, even where a wrap falls at a
    sentence's end); the next paragraph starts a new one, so the composer can tell one thought
    from the next."""
    text = (
        "Refunds take 5 days. They go back to your card.\n\n"
        "A return label costs €4.95.\nIt is deducted from the refund.\n"
        "Print the label at home,\nthen stick it on the box."
    )
    assert chunk_text(text) == [
        (
            None,
            "Refunds take 5 days. They go back to your card.\n"
            "A return label costs €4.95. It is deducted from the refund. "
            "Print the label at home, then stick it on the box.",
        )
    ]


def test_the_paragraph_after_a_list_is_not_glued_to_its_last_step() -> None:
    text = (
        "To reset it:\n\n1. Hold the button.\n2. Wait until the light blinks. It takes a while.\n\n"
        "The router restarts with its factory name. Set it up again."
    )
    assert chunk_text(text)[0][1].split("\n") == [
        "To reset it:",
        "1. Hold the button.",
        "2. Wait until the light blinks. It takes a while.",
        "The router restarts with its factory name. Set it up again.",
    ]


def test_paragraph_lines_change_no_words_and_no_chunk_boundaries() -> None:
    """Retrieval sees the same tokens: only spaces became newlines."""
    paragraphs = [_sentences(3, prefix=f"P{p}S") for p in range(8)]
    text = "\n\n".join(paragraphs)
    chunks = [c for _, c in chunk_text(text, max_words=40, overlap_sentences=1)]
    flat = [c for _, c in chunk_text(" ".join(paragraphs), max_words=40, overlap_sentences=1)]
    assert [c.split() for c in chunks] == [c.split() for c in flat]
    assert chunks != flat
    for content in chunks:
        for line in content.split("\n"):
            assert len({w[:2] for w in line.split() if w.startswith("P")}) == 1  # one paragraph
