"""The ASGI app of one worker: MLflow's scoring protocol (POST /invocations) plus GET /ping,
/health, /version, /schema, /monitoring, /metrics and POST /reload. Reload and the summed
metrics are the supervisor's (supervisor.py): the app asks it over its `control` link and
answers what it says."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlstack.logstore import Record, new_record
from mlstack.serving import fastpath
from mlstack.serving.batching import Batcher
from mlstack.serving.metrics import Metrics
from mlstack.serving.model import ServedModel, quiet_keras
from mlstack.serving.predlog import PredictionLog

log = logging.getLogger(__name__)

JSON = "application/json"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_BATCH_ROWS = 64
DEFAULT_MAX_BATCH_WAIT_S = 0.002


class BodyTooLarge(Exception):
    """The request body is over the configured limit."""


class Control(Protocol):
    """A worker's line to its supervisor (worker.WorkerLink)."""

    def start(self, state: ServerState) -> None:
        """Begin answering the supervisor's commands about `state`."""

    async def ask(self, what: str) -> tuple[int, Any]:
        """Have the supervisor do `what` ("reload" or "metrics") across all workers."""


@dataclass
class ServerState:
    """What the routes share. `model` is replaced whole on reload: a request reads it once."""

    model: ServedModel
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    predlog: PredictionLog | None = None
    metrics: Metrics = field(default_factory=Metrics)
    control: Control | None = None
    worker: int = 0
    # The newest drift check of a model (GET /monitoring); None: this app cannot look.
    latest_check: Callable[[ServedModel], dict[str, Any] | None] | None = None
    # Adaptive batching of tensor requests (batching.py); a wait of 0 turns it off.
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_batch_wait_s: float = DEFAULT_MAX_BATCH_WAIT_S
    batcher: tuple[ServedModel, Batcher] | None = None  # the current model's
    arriving: int = 0  # /invocations requests read or parsed now, not yet at the model

    async def predict_tensor(self, model: ServedModel, tensor: Any, arrival: Arrival) -> Any:
        """`model`'s answer for `tensor`, batched with concurrent requests to the same model
        (a reload starts a new batcher; requests already queued finish on the old one)."""
        arrival.done()
        if self.max_batch_wait_s <= 0 or model is not self.model:
            # Unbatched, or a request that began before a reload: on the loop (~1 ms for one
            # image), so the current model's batcher is not replaced back and forth.
            self.metrics.model_call(1)
            return model.predict_tensor(tensor)
        if self.batcher is None or self.batcher[0] is not model:
            batcher = Batcher(
                model.predict_tensor,
                self.max_batch_rows,
                self.max_batch_wait_s,
                on_call=self.metrics.model_call,
                arriving=lambda: self.arriving,
            )
            self.batcher = (model, batcher)
        return await self.batcher[1].predict_async(tensor)


class Arrival:
    """One /invocations request counted in `ServerState.arriving` until it reaches the model
    or is answered otherwise (`done`, idempotent)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        state.arriving += 1
        self.open = True

    def done(self) -> None:
        """No longer arriving."""
        if self.open:
            self.open = False
            self.state.arriving -= 1


def _error(status: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _mlflow_invocations(body: bytes, content_type: str, model: ServedModel) -> Response:
    """MLflow's own scoring code: every request form, and MLflow's errors, exactly."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    if model.keras_flavor:
        quiet_keras()  # this thread's switch (Keras keeps it per thread)
    try:
        result = invocations(body, content_type, model.pyfunc, model.input_schema)
    except MlflowException as exc:
        return Response(exc.serialize_as_json(), exc.get_http_status_code(), media_type=JSON)
    return Response(result.response, result.status, media_type=result.mimetype)


def _log_full() -> JSONResponse:
    # Refuse rather than answer a prediction that would go unrecorded.
    return _error(
        503,
        "PREDICTION_LOG_FULL",
        "the prediction log is behind (its directory may be unwritable); retry shortly",
    )


def _json_payload(body: bytes, content_type: str) -> Any:
    """The parsed body of a plain `application/json` request, or None (MLflow's to handle)."""
    mime, *params = (part.strip() for part in content_type.split(";"))
    if mime != JSON or params not in ([], ["charset=utf-8"]):
        return None
    try:
        # orjson: a 100-row body parses in ~30 us instead of ~250 us. It is stricter than
        # json (NaN, huge integers): whatever it refuses goes to MLflow, which words the error.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _answer(predictions: Any) -> tuple[Response, int]:
    return Response(orjson.dumps({"predictions": predictions.tolist()}), media_type=JSON), len(
        predictions
    )


def _fast_answer(body: bytes, content_type: str, model: ServedModel) -> tuple[Response, int] | None:
    """The tabular fast path's (answer, rows) for a scikit-learn model, or None when the
    request is not plain tabular JSON."""
    if model.estimator is None:
        return None
    matrix = fastpath.parse(_json_payload(body, content_type), model.columns, model.column_types)
    return None if matrix is None else _answer(model.predict_matrix(matrix))


async def _tensor_answer(
    body: bytes, content_type: str, model: ServedModel, state: ServerState, arrival: Arrival
) -> tuple[Response, int] | None:
    """The tensor fast path's (answer, rows) for a Keras model, batched with concurrent
    requests, or None when the request is not a plain tensor of the signature's shape."""
    if model.keras is None:
        return None
    payload = _json_payload(body, content_type)
    tensor = fastpath.parse_tensor(payload, model.tensor_shape, model.tensor_dtype)
    if tensor is None:
        return None
    return _answer(await state.predict_tensor(model, tensor, arrival))


def _record(
    state: ServerState,
    request_id: str,
    content_type: str,
    body: bytes,
    answer: Response,
    rows: int | None,
) -> Record:
    """The prediction-log record of one answered request."""
    model = state.model
    return new_record(
        request_id=request_id,
        model_name=model.name,
        model_version=model.version,
        run_id=model.run_id,
        content_type=content_type,
        request=body,
        response=bytes(answer.body),
        rows=rows,
    )


class _Routes:
    """The route handlers over one ServerState."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def invocations(self, request: Request) -> Response:
        arrival = Arrival(self.state)  # the batcher waits for requests still arriving
        try:
            return await self._invocations(request, arrival)
        finally:
            arrival.done()

    async def _invocations(self, request: Request, arrival: Arrival) -> Response:
        state = self.state
        model = state.model  # one version for the whole request, whatever reloads meanwhile
        try:
            body = await _read_body(request, state.max_body_bytes)
        except BodyTooLarge:
            return _error(
                413,
                "REQUEST_TOO_LARGE",
                f"request body over {state.max_body_bytes} bytes: send fewer rows per request "
                "or start the server with a larger --max-body-mb",
            )
        content_type = request.headers.get("content-type")
        if not content_type:
            # MLflow answers a missing Content-Type with a 500; it is the client's to fix.
            return _error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "This predictor needs a Content-Type: application/json, text/csv or "
                "application/vnd.apache.parquet.",
            )
        if state.predlog is not None and state.predlog.full:
            return _log_full()
        fast = _fast_answer(body, content_type, model) or await _tensor_answer(
            body, content_type, model, state, arrival
        )
        if fast is not None:
            answer, rows = fast
        else:
            arrival.done()
            answer = await asyncio.to_thread(_mlflow_invocations, body, content_type, model)
            rows = None  # counted from the body, only when it is logged
        request_id = uuid.uuid4().hex
        answer.headers["X-Request-Id"] = request_id
        answer.headers["X-Model-Version"] = str(model.version)
        if state.predlog is not None and answer.status_code == 200:
            try:
                state.predlog.put(_record(state, request_id, content_type, body, answer, rows))
            except queue.Full:  # filled up while this request was predicting
                return _log_full()
        return answer

    async def ping(self, request: Request) -> Response:
        return Response("\n", media_type=JSON)  # what `mlflow models serve` answers

    async def health(self, request: Request) -> Response:
        worker = {"index": self.state.worker, "pid": os.getpid()}
        return JSONResponse(
            {"status": "ok", "model": self.state.model.describe(), "worker": worker}
        )

    async def version(self, request: Request) -> Response:
        return JSONResponse(self.state.model.describe())

    async def schema(self, request: Request) -> Response:
        return JSONResponse(input_schema(self.state.model))

    async def monitoring(self, request: Request) -> Response:
        if self.state.latest_check is None:
            return JSONResponse({"latest": None})
        latest = await asyncio.to_thread(self.state.latest_check, self.state.model)
        return JSONResponse({"latest": latest})

    async def metrics(self, request: Request) -> Response:
        if self.state.control is not None:
            _, text = await self.state.control.ask("metrics")  # every worker's counts, summed
        else:
            text = self.state.metrics.render(self.state.model.describe())
        return Response(text, media_type="text/plain; version=0.0.4")

    async def reload(self, request: Request) -> Response:
        if self.state.control is None:
            return _error(
                501,
                "NOT_IMPLEMENTED",
                "this app has no supervisor to reload through; run python -m mlstack.serving",
            )
        status, answer = await self.state.control.ask("reload")  # all workers, or none
        return JSONResponse(answer, status_code=status)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "NOT_FOUND" if exc.status_code == 404 else "METHOD_NOT_ALLOWED"
        return _error(
            exc.status_code,
            code,
            f"{request.method} {request.url.path}: {exc.detail}; routes: POST /invocations, "
            "POST /reload, GET /ping /health /version /schema /monitoring /metrics",
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        state = self.state
        if state.predlog is not None:
            state.predlog.start()
        if state.control is not None:
            state.control.start(state)
        yield
        if state.predlog is not None:
            await asyncio.to_thread(state.predlog.close)  # write what is queued


def build_app(state: ServerState) -> Starlette:
    """The Starlette app over `state` (see create_app for the usual way in)."""
    routes = _Routes(state)
    return Starlette(
        lifespan=routes.lifespan,
        routes=[
            Route("/invocations", routes.invocations, methods=["POST"]),
            Route("/ping", routes.ping, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/version", routes.version, methods=["GET"]),
            Route("/schema", routes.schema, methods=["GET"]),
            Route("/monitoring", routes.monitoring, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/reload", routes.reload, methods=["POST"]),
        ],
        exception_handlers={HTTPException: routes.not_found},
        middleware=[Middleware(_MetricsMiddleware, metrics=state.metrics)],
    )


def input_schema(model: ServedModel) -> dict[str, Any]:
    """What GET /schema answers: named columns (type, and the training range when known) or
    a tensor's shape and type, from the model's signature."""
    schema = model.input_schema
    if schema is None:
        return {"columns": [], "tensor": None}
    if schema.is_tensor_spec():
        spec = schema.inputs[0]
        return {"columns": [], "tensor": {"shape": list(spec.shape), "type": str(spec.type)}}
    ranges = model.ranges or {}
    columns = [
        {"name": spec.name, "type": getattr(spec.type, "name", str(spec.type)),
         **ranges.get(spec.name, {})}
        for spec in schema.inputs
    ]  # fmt: skip
    return {"columns": columns, "tensor": None}


class _MetricsMiddleware:
    """Plain ASGI (Starlette's BaseHTTPMiddleware costs ~1 ms a request): status and latency."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - start)


def create_app(
    model: ServedModel,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    predlog: PredictionLog | None = None,
    control: Control | None = None,
    worker: int = 0,
    latest_check: Callable[[ServedModel], dict[str, Any] | None] | None = None,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_batch_wait_s: float = DEFAULT_MAX_BATCH_WAIT_S,
) -> Starlette:
    """The app serving an already loaded `model`. A worker gets its `control` link to the
        supervisor (which runs reloads) and its `worker` index; without one, /reload answers 501
        and /metrics counts this app alone (tests, embedding). Tensor requests to a Keras model are
    batched (`max_batch_rows`, `max_batch_wait_s`; a wait of 0: each alone). MLflow's serving flag
        (_MLFLOW_IS_IN_SERVING_ENVIRONMENT) is the worker process's to set, not this app's."""
    state = ServerState(
        model=model,
        max_body_bytes=max_body_bytes,
        predlog=predlog,
        control=control,
        worker=worker,
        latest_check=latest_check,
        max_batch_rows=max_batch_rows,
        max_batch_wait_s=max_batch_wait_s,
    )
    return build_app(state)
