"""Where packages registered before trainpipe's package layout changed find their model class.

A packaged model is "models from code": its folder holds the entry file it was saved with, and that file
imports the model class by the path it had then (`from trainpipe.packaging import PackagedModel`). This
alias keeps such champions loadable (the gate scores them, `predict` serves them); new packages import
trainpipe.registry.packaging. Nothing in trainpipe imports this module.
"""

from trainpipe.registry.packaging import PackagedModel

__all__ = ["PackagedModel"]
