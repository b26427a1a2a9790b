"""Separation and cross-set checks of answerability signals dumped by bench/abstain_features.py.

    python bench/abstain_fit.py FEATURES.jsonl

Prints, per group (set / split / share removed), the AUC of each signal (answerable vs not)
and the rates of the engine's own decision; then small logistic combinations fitted on one
group of sets and applied, with the cut chosen on the fitting sets, to the others.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SIGNALS = [
    "conf", "lexical", "sem1", "cov_top", "cov_article", "cov_sent", "cov_pair",
    "cov_title_sent", "cov_title", "heavy_in_article", "score1", "margin", "ratio",
    "union_gain", "title_overlap", "wl_chunk", "wl_sent", "wl_kb_best", "wl_gap10", "wl_z",
    "ml_sent", "ml_title", "ml_title_sent", "ml_kb_best", "ml_gap10", "ml_z",
    "nli_qp", "nli_pq", "nli_zs", "li_recall", "li_heavy", "llm_yes",
]  # fmt: skip


def derived(r: dict) -> dict:
    """Signals computed from the dumped ones."""
    r = dict(r)
    s1, s2 = r.get("score1", 0.0), r.get("score2", 0.0)
    r["margin"] = s1 - s2
    r["ratio"] = 1 - (s2 / s1 if s1 else 1.0)
    r["union_gain"] = -(r.get("cov_union", 0.0) - r.get("cov_article", 0.0))
    return r


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability a random answerable question outscores a random unanswerable one."""
    if not pos or not neg:
        return float("nan")
    p, n = np.array(pos)[:, None], np.array(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows per set / split / share."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[f"{r['set']}/{r['split']}/{int(100 * r['share'])}%"].append(r)
    return dict(sorted(out.items()))


def rates(rows: list[dict], score: np.ndarray, cut: float) -> tuple[float, float]:
    """(unanswerable abstained, answerable answered) when abstaining under `cut`."""
    ans = np.array([r["answerable"] for r in rows])
    neg = (~ans).sum()
    abst = (score[~ans] < cut).mean() if neg else float("nan")
    return float(abst), float((score[ans] >= cut).mean())


def matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    """Feature matrix; a missing signal (no semantic side, no passage) is 0."""
    return np.array([[float(r.get(n) or 0.0) for n in names] for r in rows])


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Weights (last = bias) by Newton's method with a small ridge penalty, classes balanced."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    pos = y.mean()
    sw = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))
    for _ in range(50):
        p = 1 / (1 + np.exp(-xb @ w))
        g = xb.T @ (sw * (p - y)) + l2 * np.r_[w[:-1], 0] / len(y)
        h = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(
            np.r_[np.full(len(w) - 1, l2), 0]
        ) / len(y)
        w -= np.linalg.solve(h + 1e-9 * np.eye(len(w)), g)
    return w


def best_cut(rows: list[dict], score: np.ndarray) -> float:
    """The cut maximising the smaller of the two pooled rates on `rows`."""
    best, at = -1.0, 0.0
    for cut in np.unique(score):
        a, b = rates(rows, score, cut)
        if min(a, b) > best:
            best, at = min(a, b), float(cut)
    return at


def main() -> int:
    """Print the tables."""
    rows = [derived(json.loads(line)) for line in Path(sys.argv[1]).open()]
    by = groups(rows)
    print("| group | neg/pos | engine abstained / answered | " + " | ".join(SIGNALS) + " |")
    for name, rs in by.items():
        pos = [r for r in rs if r["answerable"]]
        neg = [r for r in rs if not r["answerable"]]
        eng_a = np.mean([r["abstained"] for r in neg]) if neg else float("nan")
        eng_b = np.mean([not r["abstained"] for r in pos])
        aucs = [
            auc([p.get(s) or 0.0 for p in pos], [n.get(s) or 0.0 for n in neg]) for s in SIGNALS
        ]
        print(
            f"| {name} | {len(neg)}/{len(pos)} | {eng_a:.3f} / {eng_b:.3f} | "
            + " | ".join(f"{a:.2f}" for a in aucs)
            + " |"
        )
    combos = [
        c.split(",")
        for c in (sys.argv[2:] or ["conf,cov_pair", "conf,ml_sent", "conf,cov_pair,ml_sent"])
    ]
    fit_sets = [("sample", lambda r: r["set"] != "covidfaq" and r["split"] in ("all", "tuning")),
                ("covidfaq", lambda r: r["set"] == "covidfaq")]  # fmt: skip
    for names in combos:
        for label, chosen in fit_sets:
            train = [r for r in rows if chosen(r)]
            if not train:
                continue
            x, y = matrix(train, names), np.array([r["answerable"] for r in train], float)
            w = fit_logistic(x, y)
            cut = best_cut(train, matrix(train, names) @ w[:-1])
            print(f"\n{'+'.join(names)} fit on {label}: w={np.round(w, 3).tolist()} cut={cut:.3f}")
            for name, rs in by.items():
                s = matrix(rs, names) @ w[:-1]
                a, b = rates(rs, s, cut)
                print(f"  {name:40s} abstained {a:.3f} answered {b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
