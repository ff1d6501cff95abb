"""mlstack: the library behind this project's entry points (train.py, train_digits.py, ...).

Modules: settings (configuration), data (loaders), wine and digits (training), tracking
(MLflow setup and run lifecycle), registry (versions and aliases), cli (shared CLI plumbing).
Importing the package does no work: TensorFlow and MLflow load only when a function needs them.
"""

__all__ = ["UsageError"]

from mlstack.errors import UsageError
