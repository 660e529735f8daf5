"""Task ranking's evaluate verdict on its baselines: which ones beat the model, per held-out split."""

from trainpipe.cli.render import ranking_table
from trainpipe.tasks.ranking import beaten_by, beaten_messages


def results(model_val, model_test, **baselines):
    out = {"model": {"validation": {"recall_at_10": model_val}, "test": {"recall_at_10": model_test}}}
    for name, (val, test) in baselines.items():
        out[name] = {"validation": {"recall_at_10": val}, "test": {"recall_at_10": test}}
    return out


def test_baselines_above_the_model_are_listed_per_split_best_first():
    r = results(0.10, 0.06, popularity=(0.11, 0.043), svd=(0.12, 0.079), random=(0.001, 0.001))
    beaten = beaten_by(r, "recall_at_10", ["popularity", "random", "svd"])
    assert [row["baseline"] for row in beaten["validation"]] == ["svd", "popularity"]
    assert [row["baseline"] for row in beaten["test"]] == ["svd"]
    assert beaten["test"][0] == {"baseline": "svd", "baseline_value": 0.079, "model_value": 0.06}
    messages = beaten_messages(beaten, "recall_at_10")
    assert messages[0].startswith("svd beats the model on validation recall_at_10: 0.1200 vs 0.1000")
    assert len(messages) == 3


def test_a_model_that_wins_or_ties_is_not_reported_as_beaten():
    beaten = beaten_by(results(0.12, 0.08, svd=(0.12, 0.079)), "recall_at_10", ["svd"])
    assert beaten == {"validation": [], "test": []} and beaten_messages(beaten, "recall_at_10") == []


def test_the_metrics_table_says_under_it_when_a_baseline_wins_on_validation():
    metrics = {"validation": {"recall_at_10": 0.1}, "test": {"recall_at_10": 0.06},
               "baselines": {"svd": {"validation": {"recall_at_10": 0.12}, "test": {"recall_at_10": 0.079}}},
               "beaten_by": {"validation": [{"baseline": "svd", "baseline_value": 0.12, "model_value": 0.1}], "test": []}}
    assert "svd beat(s) the model on validation" in ranking_table(metrics).caption
    assert ranking_table({**metrics, "beaten_by": {"validation": [], "test": []}}).caption is None


def test_the_gate_asks_the_ranking_task_for_the_baseline_check_only_when_beat_baselines_is_on():
    from trainpipe.config import config_from_dict
    from trainpipe.tasks import task_for

    metrics = {"test_recall_at_10": 0.06, "test_svd_recall_at_10": 0.079, "test_popularity_recall_at_10": 0.043,
               "test_random_recall_at_10": 0.001}
    doc = {"task": "ranking", "data": {"path": "d.csv"}, "ranking": {"user": "u", "item": "i"}}
    (check,) = task_for(config_from_dict({**doc, "gates": {"beat_baselines": True}})).baseline_checks(metrics)
    assert not check["passed"] and check["limit"] == 0.079 and "best baseline svd" in check["reason"]
    assert task_for(config_from_dict(doc)).baseline_checks(metrics) == []  # off unless asked for
    tabular = {"task": "binary", "data": {"path": "d.csv", "target": "y"}}
    assert task_for(config_from_dict(tabular)).baseline_checks(metrics) == []
