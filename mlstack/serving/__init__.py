"""Our MLflow-compatible model server (`python -m mlstack.serving --model-uri URI`).

It answers MLflow's scoring protocol on /invocations (the same request forms, bodies and status
codes as `mlflow models serve`), plus GET /ping, /health, /version, /schema (the inputs, with
training ranges), /monitoring (the newest drift check), /metrics, and POST /reload. Requests
for a scikit-learn model with a numeric column signature take a fast path (JSON straight to a
NumPy matrix), and so do tensors for a Keras model (straight to `predict_on_batch`, batched
across concurrent requests: batching.py); anything else, and every malformed request, goes
through MLflow's own scoring code, so the answers, errors included, are MLflow's.

The process tree is always one supervisor and N workers (`--workers`, default 1): the
supervisor binds the port, resolves versions, runs reloads and alias-following for all workers
at once, renders every worker's metrics and restarts a worker that dies; each worker loads the
model and answers requests.

Modules: options (the command line, typed), sockets (binding the port), supervisor, worker,
app (the routes), fastpath (JSON to a matrix or tensor), batching, model (loading a version),
metrics, predlog
(the prediction log and its MLflow run).
"""
