"""Issue 6's "done means" through the real CLI: `trainpipe init --task ranking` on a MovieLens-like ratings file,
`trainpipe run` with no editing (two_tower, baselines, registered), `trainpipe recommend` for a known user (text,
--json and the Parquet batch form), the champion comparison on a second run, and bad input as one line."""

from __future__ import annotations

import pandas as pd
import pytest

from trainpipe.ranking.generate import movielens_like

pytestmark = pytest.mark.e2e


def test_init_run_recommend_and_champion_gate(cli, cli_json, tmp_path, store):
    ratings = tmp_path / "ratings.csv"
    frame = movielens_like(users=200, items=150, interactions=5_000, seed=5)
    frame.to_csv(ratings, index=False)
    code, init = cli_json("init", str(tmp_path / "ml"), "--data", str(ratings), "--task", "ranking", "--user", "userId",
                          "--item", "movieId", "--time", "timestamp", "--rating", "rating", "--positive-threshold", "4")
    assert code == 0, init
    pipeline = init["pipeline"]

    code, run = cli_json("run", pipeline)
    assert code == 0, run
    assert {s["status"] for s in run["stages"]} == {"completed"} and len(run["stages"]) >= 8
    assert run["registered"]["version"] == "1" and "champion" in run["registered"]["aliases"]
    code, again = cli_json("stage", "register", "--run", run["run_id"], "--store", str(store))  # idempotent per run
    assert code == 0 and again["registered"]["version"] == "1" and again["registered"]["already_registered"], again
    metrics = run["metrics"]
    assert set(metrics["baselines"]) == {"popularity", "random", "svd"}
    for baseline in metrics["baselines"].values():  # each baseline's metrics next to the model's
        assert baseline["test"]["users"] == metrics["test"]["users"]
    assert metrics["lift"]["test"]["lift_recall_at_10"] == pytest.approx(
        metrics["test"]["recall_at_10"] / metrics["baselines"]["popularity"]["test"]["recall_at_10"])
    assert metrics["test"]["recall_at_10"] > metrics["baselines"]["random"]["test"]["recall_at_10"]

    positives = frame[frame["rating"] >= 4]
    user = int(positives["userId"].value_counts().index[0])
    code, rec = cli_json("recommend", "models:/ml@champion", "--user", str(user), "--user", "nobody", "--k", "5")
    assert code == 0, rec
    known, unknown = rec["recommendations"]
    assert known["source"] == "model" and [r["rank"] for r in known["items"]] == [1, 2, 3, 4, 5]
    seen = set(positives.loc[positives["userId"] == user, "movieId"].astype(str))
    assert not seen & {r["item"] for r in known["items"]}  # items the user already liked are not recommended
    assert unknown["source"] == "popularity" and len(unknown["items"]) == 5

    text = cli("recommend", "models:/ml@champion", "--user", str(user), "--k", "3")
    assert text.returncode == 0 and f"user {user}" in text.stdout and "rank" in text.stdout

    users_file, out = tmp_path / "users.csv", tmp_path / "recs.parquet"
    pd.DataFrame({"userId": positives["userId"].drop_duplicates().head(20)}).to_csv(users_file, index=False)
    code, batch = cli_json("recommend", "models:/ml@champion", "--users", str(users_file), "--out", str(out), "--k", "4")
    assert code == 0, batch
    written = pd.read_parquet(out)
    assert len(written) == 80 and written.groupby("user").size().eq(4).all() and (written["source"] == "model").all()

    # a one-epoch model against the champion on the same test users: compared, and blocked as worse
    code, second = cli_json("run", pipeline, "--set", "model.params.epochs=1", "--set", "model.params.lr=0.0001")
    assert code == 3, second
    champion = second["decision"]["champion"]
    assert champion["status"] == "compared" and champion["champion_version"] == "1" and champion["improvement"] < 0

    bad = cli("run", pipeline, "--set", "ranking.user=uid")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "ranking.user: column 'uid' is not in the data" in bad.stderr


@pytest.mark.extended
def test_the_example_beats_most_popular_by_the_lift_its_gate_documents(cli_json, tmp_path, store):
    """examples/ranking as `make run` runs it (the data examples/make_data.py writes, the pipeline unchanged): the
    two-tower model must clear the example's own gate, test_lift_recall_at_10 >= 1.5 (most-popular + 50%)."""
    import shutil

    import yaml

    from tests.conftest import REPO
    from trainpipe.ranking.generate import synthetic_interactions

    example = tmp_path / "ranking"
    example.mkdir()
    shutil.copy(REPO / "examples" / "ranking" / "pipeline.yaml", example / "pipeline.yaml")
    synthetic_interactions(2000, 1000, 50_000, seed=7).frame.to_parquet(example / "interactions.parquet", index=False)
    documented = yaml.safe_load((example / "pipeline.yaml").read_text())["gates"]["min"]["test_lift_recall_at_10"]
    assert documented == 1.5

    code, run = cli_json("run", str(example / "pipeline.yaml"))
    assert code == 0, run  # the gate passed: exit 3 otherwise
    lift = run["metrics"]["lift"]["test"]["lift_recall_at_10"]
    popular = run["metrics"]["baselines"]["popularity"]["test"]["recall_at_10"]
    assert lift >= documented and run["metrics"]["test"]["recall_at_10"] >= documented * popular, (lift, popular)
    assert run["registered"]["version"] == "1"
