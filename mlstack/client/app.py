"""The web client (Streamlit): predict a wine's quality, read a handwritten digit, see and update
the model, see its latest drift check. It talks only to our model server (`mlstack.serving`)
over HTTP; MLflow's address is used for links alone.

    python -m mlstack.client --server-url http://127.0.0.1:8080     # or: make client
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mlstack.client import inputs
from mlstack.client.api import ClientError, ServerClient
from mlstack.settings import ClientSettings

DIGIT_CLASSES = [str(d) for d in range(10)]


def run_link(mlflow_url: str, model: dict[str, Any], suffix: str = "") -> str | None:
    """The MLflow UI page of the model's run (None when the server did not say which)."""
    if not model.get("run_id") or not model.get("experiment_id"):
        return None
    return f"{mlflow_url}/#/experiments/{model['experiment_id']}/runs/{model['run_id']}{suffix}"


def connect(settings: ClientSettings) -> tuple[ServerClient, dict[str, Any] | None]:
    """The sidebar: which server, and what it serves (None, with the reason shown, if down)."""
    st.sidebar.header("Model server")
    url = st.sidebar.text_input("Server URL", value=settings.server_url, key="server_url")
    client = ServerClient(url)
    try:
        model = client.version()
    except ClientError as exc:
        st.sidebar.error(str(exc))
        return client, None
    st.sidebar.success(f"Serving {model.get('name')} version {model.get('version')}")
    st.sidebar.caption(f"{model.get('model_uri')}")
    return client, model


def cached_schema(client: ServerClient, model: dict[str, Any]) -> dict[str, Any]:
    """/schema, asked once per server and version."""
    key = ("schema", client.base_url, model.get("version"))
    if key not in st.session_state:
        st.session_state[key] = client.schema()
    return st.session_state[key]


def wine_tab(client: ServerClient, model: dict[str, Any] | None) -> None:
    """Eleven inputs with the training data's ranges, one prediction; or a CSV batch."""
    st.subheader("Predict a wine's quality")
    if model is None:
        st.info("Connect to a model server (sidebar) to predict.")
        return
    try:
        features = inputs.features_of(cached_schema(client, model))
    except ClientError as exc:
        st.error(str(exc))
        return
    if not features:
        st.warning("This server's model takes images, not wine measurements: see Digits.")
        return
    values, submitted = wine_form(features)
    if submitted:
        st.session_state["wine:answer"] = predict_one(client, values, features)
    kind, answer = st.session_state.get("wine:answer", (None, None))
    if kind == "error":
        st.error(answer)
    elif kind == "ok":
        st.metric("Predicted quality", f"{float(answer.predictions[0]):.2f}")
        st.caption(
            f"answered by {model.get('name')} version {answer.version or model.get('version')}"
            f" · request {answer.request_id}"
        )
    wine_batch(client, features)


def wine_form(features: list[inputs.Feature]) -> tuple[dict[str, float], bool]:
    """One number input per feature, in three columns; (the values, whether Predict was hit)."""
    with st.form("wine-form"):
        columns = st.columns(3)
        values = {}
        for i, f in enumerate(features):
            span = (f.high - f.low) if f.low is not None and f.high is not None else 1.0
            values[f.name] = columns[i % 3].number_input(
                f.name,
                min_value=f.low,
                max_value=f.high,
                value=f.default,
                step=float(f"{span / 100:.1g}") or 0.01,
                format="%.4f",
                key=f"wine:{f.name}",
                help=None
                if f.low is None or f.high is None
                else f"training data: {f.low:g} to {f.high:g} (its central 99%)",
            )
        submitted = st.form_submit_button("Predict", type="primary")
    return values, submitted


def predict_one(
    client: ServerClient, values: dict[str, float], features: list[inputs.Feature]
) -> tuple[str, Any]:
    """("ok", the server's answer) for one wine, or ("error", why not)."""
    problems = inputs.check_row(values, features)
    if problems:
        return "error", "; ".join(problems)
    body = {"dataframe_split": {"columns": list(values), "data": [list(values.values())]}}
    try:
        return "ok", client.predict(body)
    except ClientError as exc:
        return "error", str(exc)


def wine_batch(client: ServerClient, features: list[inputs.Feature]) -> None:
    """A CSV of wines in, the table with a prediction column out (and to download)."""
    st.subheader("Many wines at once")
    upload = st.file_uploader("CSV with the features by name", type=["csv"], key="wine:csv")
    if upload is None:
        return
    try:
        table = inputs.read_csv(upload.getvalue(), features)
        predictions: list[float] = []
        for body in inputs.batches(table):
            predictions += client.predict(body).predictions
    except (ValueError, ClientError) as exc:
        st.error(str(exc))
        return
    result = table.assign(**{"predicted quality": np.round(predictions, 4)})
    st.dataframe(result, key="wine:batch")
    st.download_button(
        "Download predictions",
        result.to_csv(index=False).encode(),
        file_name="predictions.csv",
        mime="text/csv",
    )


def _toggle(row: int, col: int) -> None:
    grid = st.session_state["digit"]
    grid[row, col] = 0.0 if grid[row, col] > 0.5 else 1.0


def digits_tab(client: ServerClient, model: dict[str, Any] | None) -> None:
    """An 8x8 grid of cells to click (or an uploaded picture); the ten probabilities."""
    st.subheader("Read a handwritten digit")
    if "digit" not in st.session_state:
        st.session_state["digit"] = np.zeros((inputs.GRID, inputs.GRID))
    grid = st.session_state["digit"]
    left, right = st.columns([2, 1])
    with left:
        st.caption("Click cells to draw (8 x 8, as the model was trained), or upload a picture.")
        for r in range(inputs.GRID):
            cells = st.columns(inputs.GRID, gap="small")
            for c in range(inputs.GRID):
                cells[c].button("■" if grid[r, c] > 0.5 else "·", key=f"cell-{r}-{c}",
                                on_click=_toggle, args=(r, c))  # fmt: skip
    with right:
        picture = st.file_uploader("Picture of a digit", type=["png", "jpg", "jpeg"],
                                   key="digit:upload")  # fmt: skip
        if picture is not None and st.session_state.get("digit:from") != picture.file_id:
            try:
                st.session_state["digit"] = grid = inputs.image_from_upload(picture.getvalue())
                st.session_state["digit:from"] = picture.file_id
            except ValueError as exc:
                st.error(str(exc))
        st.image(np.kron(grid, np.ones((12, 12))), caption="what the model sees", clamp=True)
        if st.button("Clear", key="digit:clear"):
            st.session_state["digit"] = np.zeros((inputs.GRID, inputs.GRID))
            st.rerun()
        read = st.button("Read digit", type="primary", key="digit:read")
    if read:
        if model is None:
            st.error("Connect to a model server (sidebar) first.")
            return
        try:
            answer = client.predict(inputs.digits_payload(grid))
        except ClientError as exc:
            st.error(str(exc))
            return
        probabilities = np.asarray(answer.predictions, dtype="float64").reshape(-1)
        if probabilities.size != 10:
            st.error("This server's model does not answer ten digit probabilities: see Wine.")
            return
        best = int(probabilities.argmax())
        st.metric("The model reads", f"{best}", f"{probabilities[best]:.0%} sure")
        st.bar_chart(pd.DataFrame({"probability": probabilities}, index=DIGIT_CLASSES))


def model_tab(client: ServerClient, model: dict[str, Any] | None, mlflow_url: str) -> None:
    """What is served, a button to load what the alias names now, and the latest drift check."""
    st.subheader("The model")
    if model is None:
        st.info("Connect to a model server (sidebar) to see its model.")
        return
    st.markdown(
        f"**{model.get('name')}** version **{model.get('version')}**, alias "
        f"`{model.get('alias')}` · `{model.get('model_uri')}`"
    )
    link = run_link(mlflow_url, model)
    if link:
        st.markdown(f"[Its training run in MLflow]({link})")
    if st.button("Update model", key="model:reload"):
        try:
            answer = client.reload()
            before = answer.get("previous", {}).get("version")
            after = answer.get("serving", {}).get("version")
            st.session_state["model:reloaded"] = (
                f"Still version {after}: the alias has not moved."
                if before == after
                else f"Updated: version {before} → {after}."
            )
        except ClientError as exc:
            st.session_state["model:reloaded"] = f"error: {exc}"
        st.rerun()
    message = st.session_state.pop("model:reloaded", None)
    if message and message.startswith("error: "):
        st.error(message.removeprefix("error: "))
    elif message:
        st.success(message)

    st.subheader("Latest drift check")
    try:
        latest = client.monitoring()
    except ClientError as exc:
        st.error(str(exc))
        return
    if latest is None:
        st.info(
            f"No drift check of version {model.get('version')} yet: run "
            f"`python -m mlstack.monitor --model {model.get('name')}`."
        )
        return
    verdict = "drift" if latest.get("drift") else "no drift"
    st.metric("Verdict", verdict)
    if latest.get("reasons"):
        st.write(f"Why: {latest['reasons']}")
    st.caption(f"checked {latest.get('checked_at')} on {latest.get('rows')} predictions")
    report = run_link(mlflow_url, latest, "/artifacts/report.html")
    if report:
        st.markdown(f"[The report (report.html)]({report})")


def main() -> None:
    """The page."""
    st.set_page_config(page_title="mlstack client", layout="wide")
    st.title("mlstack")
    settings = ClientSettings()
    client, model = connect(settings)
    mlflow_url = settings.mlflow_url.rstrip("/")
    wine, digits, about = st.tabs(["Wine", "Digits", "Model"])
    with wine:
        wine_tab(client, model)
    with digits:
        digits_tab(client, model)
    with about:
        model_tab(client, model, mlflow_url)


main()
