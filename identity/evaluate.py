"""Pairwise precision and recall of a resolution against ground truth, from cluster sizes alone."""

from __future__ import annotations

import polars as pl

from identity.normalize import as_text

KEYS = ["source", "record_id"]


def _pairs(counts: pl.Expr) -> pl.Expr:
    counts = counts.cast(pl.Int64)
    return (counts * (counts - 1) // 2).sum()


def _one_label_per_record(frame: pl.DataFrame, label: str, name: str) -> pl.DataFrame:
    missing = [column for column in [*KEYS, label] if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")
    # as resolve reads them: a float column's whole numbers as integers (17, not 17.0)
    frame = frame.select(*(as_text(frame, column) for column in [*KEYS, label])).unique()
    if frame.select(KEYS).is_duplicated().any():
        raise ValueError(f"{name} gives some record two different {label}s")
    return frame


def pairwise_scores(predicted: pl.DataFrame, truth: pl.DataFrame) -> dict:
    """Pairs of records put together by `predicted` (user_id) versus by `truth` (person_id).

    Only records present in both count. With n the records one (user, person) cell shares, correct pairs are
    sum C(n, 2) over cells; predicted and true pairs the same over users and persons, so nothing is ever
    enumerated pair by pair. No predicted pairs gives precision 1.0, no true pairs recall 1.0 (nothing to get
    wrong, nothing to miss).
    """
    predicted = _one_label_per_record(predicted, "user_id", "predicted")
    truth = _one_label_per_record(truth, "person_id", "truth")
    both = predicted.join(truth, on=KEYS, how="inner")
    cells = both.group_by("user_id", "person_id").len()
    correct = cells.select(_pairs(pl.col("len"))).item() or 0
    predicted_pairs = cells.group_by("user_id").agg(pl.col("len").sum()).select(_pairs(pl.col("len"))).item() or 0
    true_pairs = cells.group_by("person_id").agg(pl.col("len").sum()).select(_pairs(pl.col("len"))).item() or 0
    precision = correct / predicted_pairs if predicted_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_pairs": int(true_pairs),
        "predicted_pairs": int(predicted_pairs),
        "correct_pairs": int(correct),
        "records": both.height,
    }
