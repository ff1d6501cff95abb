"""Drift monitoring of the prediction log (`python -m mlstack.monitor`, MLproject `monitor`).

A served model's prediction log (python -m mlstack.serving --log-predictions) is compared with
the serving version's reference, which training logged with the version's run: what it was
evaluated on. Evidently makes the report; the check is logged as a run in `<model>-monitoring`.

Modules: profiles (what is monitored per kind of model, and the drift rule), reference (logged
at training, read here), window (finding and reading the log, the window, labels), drift (the
comparison), run (one check, logged), __main__ (the command line); shifts (designed
distribution shifts) and simulate (traffic for a running server, `python -m
mlstack.monitor.simulate`), which tests, benchmarks and people use to see the monitor work.
"""
