"""The web client's only line to the outside: our model server, over HTTP. Every failure
becomes a ClientError whose message a person can act on (never a traceback in the page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

TIMEOUT_S = 30.0


class ClientError(Exception):
    """Something the page shows as one message: what went wrong and what to do."""


@dataclass(frozen=True)
class Prediction:
    """One answer: the predictions, the request id, and the version that answered."""

    predictions: list[Any]
    request_id: str
    version: str | None


class ServerClient:
    """GET /version, /schema, /monitoring; POST /invocations, /reload on `base_url`."""

    def __init__(self, base_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base_url}{path}"
        if not self.base_url.startswith(("http://", "https://")):
            raise ClientError(
                f"{self.base_url!r} is not a server URL; give one like http://127.0.0.1:8080"
            )
        try:
            return requests.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc) else "cannot connect"
            raise ClientError(
                f"No model server answers at {self.base_url} ({reason}). Start one "
                "(make serve) or correct the server URL."
            ) from exc
        except requests.Timeout as exc:
            raise ClientError(
                f"The model server at {self.base_url} did not answer within "
                f"{self.timeout_s:g} s; try again, or send fewer rows."
            ) from exc
        except requests.RequestException as exc:
            raise ClientError(f"Cannot reach {url}: {type(exc).__name__}.") from exc

    def _json(self, response: requests.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise ClientError(f"The server refused {what} ({response.status_code}): "
                              f"{_message(response)}")  # fmt: skip
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"{self.base_url} answered {what} with something that is not JSON: is it an "
                "mlstack model server (python -m mlstack.serving)?"
            ) from exc

    def version(self) -> dict[str, Any]:
        """The model being served (name, version, alias, run id, ...)."""
        response = self._call("GET", "/version")
        if response.status_code == 404:
            raise ClientError(
                f"{self.base_url} answers, but is not an mlstack model server (no /version); "
                "check the server URL"
            )
        return self._json(response, "GET /version")

    def schema(self) -> dict[str, Any]:
        """The model's inputs: named columns with their training ranges, or a tensor shape."""
        return self._json(self._call("GET", "/schema"), "GET /schema")

    def monitoring(self) -> dict[str, Any] | None:
        """The newest drift check of the version being served, or None when there is none."""
        return self._json(self._call("GET", "/monitoring"), "GET /monitoring").get("latest")

    def reload(self) -> dict[str, Any]:
        """Load what the alias names now; the server's answer (previous and serving)."""
        response = self._call("POST", "/reload")
        body = self._json(response, "the reload") if response.status_code < 500 else None
        if body is None:
            raise ClientError(f"The reload failed; still serving the old version: "
                              f"{_message(response)}")  # fmt: skip
        return body

    def predict(self, payload: dict[str, Any]) -> Prediction:
        """POST /invocations with an MLflow JSON body."""
        response = self._call("POST", "/invocations", json=payload)
        body = self._json(response, "the prediction")
        if not isinstance(body, dict) or "predictions" not in body:
            raise ClientError("The server's answer holds no predictions.")
        return Prediction(
            predictions=body["predictions"],
            request_id=response.headers.get("X-Request-Id", ""),
            version=response.headers.get("X-Model-Version"),
        )


def _message(response: requests.Response) -> str:
    """The server's own words: the JSON body's message, else the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:500]
    return str(body)[:300]
