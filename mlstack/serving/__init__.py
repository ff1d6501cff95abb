"""Our MLflow-compatible model server (`python -m mlstack.serving --model-uri URI`).

It answers MLflow's scoring protocol on /invocations (the same request forms, bodies and status
codes as `mlflow models serve`), plus /ping, /health, /version, /metrics and /reload. Requests
for a scikit-learn model with a numeric column signature take a fast path (JSON straight to a
NumPy matrix); anything else, and every malformed request, goes through MLflow's own scoring
code, so the answers, errors included, are MLflow's.

Modules: app (the routes), fastpath (JSON to a matrix), model (loading a version), metrics,
predlog (the prediction log), runner (socket, app, uvicorn), workers (--workers N: the
supervisor and the worker processes).
"""
