"""Where ranking packages registered before trainpipe's package layout changed find their model class (their
entry file says `from trainpipe.ranking.packaging import RecommenderModel`); new packages import
trainpipe.registry.ranking_packaging. Nothing in trainpipe imports this module (see trainpipe/packaging.py)."""

from trainpipe.registry.ranking_packaging import RecommenderModel

__all__ = ["RecommenderModel"]
