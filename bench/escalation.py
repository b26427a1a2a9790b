"""Explicit-request detector of the escalation policy: does a message ask for a person?

    python bench/escalation.py [UTTERANCES] [--no-misses]

UTTERANCES defaults to ../shared/data/escalation-dev/utterances.jsonl (relative to the repo):
JSONL of {"text", "human": bool, "source", ...}, optionally "angry" and "callback" flags. It
prints, for `worker.escalation.asks_for_person` and for the keyword baseline of the set's
SOURCE.md:

- precision, recall and false-alarm rate (false positives / negatives), with the counts
- the same per source
- recall on the angry and on the call-back positives, and the call-back flag's recall there
- the negative-sentiment signal on the angry rows (VADER compound or a frustration phrase)
- every miss, false negatives then false positives, with the rule and phrase that fired
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.escalation import NEGATIVE_THRESHOLD, asks_for_person, negativity  # noqa: E402
from worker.escalation.sentiment import frustration  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "data" / "escalation-dev" / "utterances.jsonl"
_BASELINE = re.compile(
    r"human|person|agent|representative|someone|operator|real person|customer service", re.I
)


def baseline(text: str) -> bool:
    """The keyword baseline from the set's SOURCE.md."""
    return bool(_BASELINE.search(text))


def ours(text: str) -> bool:
    """The shipped detector."""
    return asks_for_person(text).matched


def scores(rows: list[dict], predict: Callable[[str], bool]) -> dict:
    """Confusion counts and precision / recall / false-alarm rate of one predictor."""
    tp = fp = fn = tn = 0
    for row in rows:
        guess = predict(row["text"])
        if row["human"]:
            tp, fn = tp + guess, fn + (not guess)
        else:
            fp, tn = fp + guess, tn + (not guess)
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "false_alarm": fp / (fp + tn) if fp + tn else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def _line(name: str, s: dict) -> str:
    """One table row."""
    return (
        f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['false_alarm']:.3f} "
        f"| {s['tp']} | {s['fp']} | {s['fn']} | {s['tn']} |"
    )


def _print_overall(rows: list[dict]) -> None:
    """Overall and per-source tables, ours against the baseline."""
    print("| detector | precision | recall | false alarm | TP | FP | FN | TN |")
    print("|---|---|---|---|---|---|---|---|")
    print(_line("ours", scores(rows, ours)))
    print(_line("keyword baseline (SOURCE.md)", scores(rows, baseline)))
    by_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_source[row.get("source", "?").split(":")[0]].append(row)
    print("\n| source | n | precision | recall | false alarm | baseline P / R / FA |")
    print("|---|---|---|---|---|---|")
    for source, part in sorted(by_source.items()):
        s, b = scores(part, ours), scores(part, baseline)
        print(
            f"| {source} | {len(part)} | {s['precision']:.3f} | {s['recall']:.3f} "
            f"| {s['false_alarm']:.3f} | {b['precision']:.3f} / {b['recall']:.3f} "
            f"/ {b['false_alarm']:.3f} |"
        )


def _subset_recall(rows: list[dict], flag: str) -> None:
    """Recall on the positives carrying `flag` (angry, callback)."""
    part = [r for r in rows if r["human"] and r.get(flag)]
    if not part:
        print(f"{flag} positives: none in this set")
        return
    found = [asks_for_person(r["text"]) for r in part]
    hit = sum(d.matched for d in found)
    base = sum(baseline(r["text"]) for r in part)
    extra = ""
    if flag == "callback":
        extra = f", call-back flag set on {sum(d.callback for d in found)}/{len(part)}"
    print(
        f"{flag} positives: recall {hit / len(part):.3f} ({hit}/{len(part)}), "
        f"baseline {base / len(part):.3f}{extra}"
    )


def _angry_signal(rows: list[dict]) -> None:
    """How often the negative-sentiment signal fires on angry rows and on the others."""
    if not any(r.get("angry") for r in rows):
        return

    def fires(text: str) -> bool:
        return negativity(text) <= NEGATIVE_THRESHOLD or frustration(text) is not None

    angry = [r for r in rows if r.get("angry")]
    calm = [r for r in rows if not r.get("angry")]
    a, c = sum(fires(r["text"]) for r in angry), sum(fires(r["text"]) for r in calm)
    print(
        f"negative_sentiment signal (compound <= {NEGATIVE_THRESHOLD} or frustration phrase): "
        f"angry rows {a}/{len(angry)} ({a / len(angry):.3f}), "
        f"other rows {c}/{len(calm)} ({c / len(calm):.3f})"
    )


def _print_misses(rows: list[dict]) -> None:
    """Every false negative and false positive, with what fired."""
    misses = [(r, asks_for_person(r["text"])) for r in rows]
    fns = [(r, d) for r, d in misses if r["human"] and not d.matched]
    fps = [(r, d) for r, d in misses if not r["human"] and d.matched]
    print(f"\nfalse negatives ({len(fns)}):")
    for row, _ in fns:
        print(f"  FN  {row['text']!r}  [{row.get('source', '?').split(':')[0]}]")
    print(f"false positives ({len(fps)}):")
    for row, d in fps:
        print(f"  FP  {row['text']!r}  rule={d.rule} phrase={d.evidence!r}")


def main(argv: list[str] | None = None) -> int:
    """Load the set, print every table, exit 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("utterances", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--no-misses", action="store_true", help="do not list the misses")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.utterances.read_text().splitlines() if line.strip()]
    positives = sum(r["human"] for r in rows)
    print(f"{args.utterances}: {len(rows)} rows, {positives} positive\n")
    _print_overall(rows)
    print()
    _subset_recall(rows, "angry")
    _subset_recall(rows, "callback")
    _angry_signal(rows)
    if not args.no_misses:
        _print_misses(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
