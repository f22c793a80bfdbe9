import itertools
import random

import polars as pl
import pytest

from identity import pairwise_scores


def brute_force(predicted: pl.DataFrame, truth: pl.DataFrame) -> dict:
    user = {(s, r): u for s, r, u in predicted.iter_rows()}
    person = {(s, r): p for s, r, p in truth.iter_rows()}
    common = sorted(set(user) & set(person))
    predicted_pairs = true_pairs = correct = 0
    for a, b in itertools.combinations(common, 2):
        same_user = user[a] == user[b]
        same_person = person[a] == person[b]
        predicted_pairs += same_user
        true_pairs += same_person
        correct += same_user and same_person
    precision = correct / predicted_pairs if predicted_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true_pairs,
            "predicted_pairs": predicted_pairs, "correct_pairs": correct, "records": len(common)}


@pytest.mark.parametrize("seed", range(60))
def test_pairwise_scores_match_brute_force(seed):
    rng = random.Random(seed)
    records = [(rng.choice(["oa", "crm"]), str(i)) for i in range(rng.randint(0, 80))]
    records = list(dict.fromkeys(records))
    n_users, n_persons = rng.randint(1, 30), rng.randint(1, 30)
    predicted = pl.DataFrame(
        [(s, r, f"u{rng.randrange(n_users)}") for s, r in records if rng.random() < 0.9],
        schema=["source", "record_id", "user_id"], orient="row",
    )
    truth = pl.DataFrame(
        [(s, r, f"p{rng.randrange(n_persons)}") for s, r in records if rng.random() < 0.9],
        schema=["source", "record_id", "person_id"], orient="row",
    )
    got = pairwise_scores(predicted, truth)
    expected = brute_force(predicted, truth)
    assert got == pytest.approx(expected)


def test_perfect_and_singleton_predictions():
    truth = pl.DataFrame({"source": ["a"] * 4, "record_id": list("1234"), "person_id": ["p", "p", "q", "q"]})
    perfect = truth.rename({"person_id": "user_id"})
    assert pairwise_scores(perfect, truth)["f1"] == 1.0
    singletons = truth.with_columns(user_id=pl.col("record_id")).drop("person_id")
    scores = pairwise_scores(singletons, truth)
    assert (scores["precision"], scores["recall"], scores["true_pairs"]) == (1.0, 0.0, 2)


def test_a_record_with_two_users_is_an_error():
    predicted = pl.DataFrame({"source": ["a", "a"], "record_id": ["1", "1"], "user_id": ["u1", "u2"]})
    truth = pl.DataFrame({"source": ["a"], "record_id": ["1"], "person_id": ["p"]})
    with pytest.raises(ValueError, match="two different"):
        pairwise_scores(predicted, truth)


def test_float_record_ids_meet_the_text_ones_resolve_writes():
    """A truth file from pandas holds record ids as floats once one is missing; resolve writes 17, not 17.0."""
    predicted = pl.DataFrame({"source": ["crm"] * 3, "record_id": ["17", "18", "19"], "user_id": ["u1", "u1", "u2"]})
    truth = pl.DataFrame({"source": ["crm"] * 3, "record_id": [17.0, 18.0, 19.0], "person_id": [1.0, 1.0, 2.0]})
    scores = pairwise_scores(predicted, truth)
    assert (scores["records"], scores["precision"], scores["recall"]) == (3, 1.0, 1.0)
