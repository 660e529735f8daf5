"""Write the example data sets next to the example pipelines (run by `make run`)."""

from pathlib import Path

from trainpipe.tools.datasets import breast_cancer, synthetic_churn
from trainpipe.ranking.generate import synthetic_interactions

HERE = Path(__file__).parent

if __name__ == "__main__":
    breast_cancer().to_parquet(HERE / "breast_cancer" / "breast_cancer.parquet", index=False)
    synthetic_churn(rows=200_000, seed=7).to_csv(HERE / "churn" / "churn.csv", index=False)
    synthetic_interactions(2000, 1000, 50_000, seed=7).frame.to_parquet(HERE / "ranking" / "interactions.parquet", index=False)
    print(f"wrote example data under {HERE}")
