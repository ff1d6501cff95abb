"""mlstack: the library behind this project's entry points (train.py, train_digits.py, ...).

Modules: settings (configuration), data (loaders), wine and digits (training), tracking
(MLflow setup and run lifecycle), registry (versions and aliases), cli (shared CLI plumbing),
promote (moving an alias by hand), provenance (the image's code check). Packages: stack/ (the
native tracking stack), serving/ (our model server), monitor/ (drift checks of the prediction
log, with the designed shifts and the traffic simulator), pipelines/ (scheduled retraining with
Prefect), client/ (the web client), entrypoints/ (processes the library never imports: `make
env` and the dev image's entry point).

Importing the package, settings, errors, data or cli does no work and loads neither MLflow nor
TensorFlow; tracking and registry, which are about MLflow, import it, and TensorFlow loads only
inside the digits functions that use it.
"""

__all__ = ["UsageError"]

from mlstack.errors import UsageError
