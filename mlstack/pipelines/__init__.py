"""Scheduled retraining with Prefect 3 (`python -m mlstack.pipelines serve|run`).

Modules: retrain (the pipeline as plain functions: monitor, labelled data, retrain, promote;
each step an MLflow run linked to the others), labels (label files joined with the prediction
log), flows (the Prefect flow and its tasks), __main__ (serving the deployments on a schedule,
and running one on demand through the Prefect server).
"""
