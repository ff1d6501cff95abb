"""Send simulated traffic to a running model server, in-distribution first, then shifted, so a
person can watch the monitoring loop work (`python -m mlstack.monitor.simulate`).

    python -m mlstack.monitor.simulate --kind wine --clean 200 --shifted 200 --labels-out labels.csv
    python -m mlstack.monitor.simulate --clean 0 --shifted 500 --shift "feature:alcohol:1"

Wine rows are drawn (seeded) from the wine data (`--data`, else as train.py finds it; `make
simulate` passes the team's copy beside the checkout, as `make train` does). Digits are the
held-out images of the default training split (scikit-learn's 8x8 set, split with
mlstack.params.DigitsParams' test_size and seed, so they stay images training never saw).
`--shift` says how the shifted rows differ (mlstack.monitor.shifts):

- wine: `warm` (default: a warmer region, several features and the quality move together),
  `feature:<column>:<sd>` (one column moved by that many of its standard deviations, the rest
  untouched), `relations` (acidity, citric acid, density and pH shuffled across rows: every
  column keeps its own distribution, their relations are gone);
- digits: `handwriting` (default: a new hand, thicker and slanted on grey paper), `thicker`
  (a broader pen only), `slant` (slanted only).

`--labels-out` writes each answered request's id with its true label, the feedback a
retraining needs (python -m mlstack.pipelines).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlstack import cli
from mlstack.errors import UsageError
from mlstack.params import DigitsParams

PROG = "python -m mlstack.monitor.simulate"
KINDS = ("wine", "digits")
# Training's default split, read from its parameters: a copy could drift from them, and the
# "held-out" images would then be ones the model was trained on.
DIGITS_SPLIT = {"test_size": DigitsParams().test_size, "seed": DigitsParams().seed}
SHIFTS = {"wine": ("warm", "feature:<column>:<sd>", "relations"),
          "digits": ("handwriting", "thicker", "slant")}  # fmt: skip
DEFAULT_SHIFT = {kind: names[0] for kind, names in SHIFTS.items()}


def check_shift(kind: str, shift: str) -> str:
    """`shift` if it names a shift of `kind`; else UsageError naming the choices."""
    from mlstack.data import WINE_FEATURES

    choices = ", ".join(SHIFTS[kind])
    if kind == "wine" and shift.startswith("feature:"):
        column, _, amount = shift[len("feature:") :].rpartition(":")
        if column not in WINE_FEATURES:
            raise UsageError(
                f"--shift {shift!r}: no wine feature {column!r}; one of: {', '.join(WINE_FEATURES)}"
            )
        try:
            float(amount)
        except ValueError:
            raise UsageError(
                f"--shift {shift!r}: {amount!r} is not a number of standard deviations "
                "(e.g. feature:alcohol:1)"
            ) from None
        return shift
    if shift not in SHIFTS[kind]:
        raise UsageError(f"--shift {shift!r} is not a {kind} shift; one of: {choices}")
    return shift


@dataclass
class Traffic:
    """What was sent and what came back."""

    sent: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    labels: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """Requests not answered 200."""
        return sum(self.failed.values())


def wine_rows(data: str | None, n: int, seed: int, shift: str | None) -> pd.DataFrame:
    """`n` wine rows (features and quality), drawn with replacement; moved by `shift` (see
    the module docstring) unless None."""
    from mlstack.data import load_wine
    from mlstack.monitor import shifts
    from mlstack.monitor.rules import spread
    from mlstack.settings import get_settings

    wine = load_wine(data, get_settings())
    rows = wine.frame.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    if shift is None:
        return rows
    if shift == "warm":
        return shifts.warm_region(rows)
    if shift == "relations":
        return shifts.broken_relations(rows, seed=seed)
    column, _, amount = check_shift("wine", shift)[len("feature:") :].rpartition(":")
    by = float(amount) * spread(wine.frame[column].to_numpy(dtype="float64"))
    return shifts.move_columns(rows, {column: by})


def digit_images(n: int, seed: int, shift: str | None) -> tuple[np.ndarray, np.ndarray]:
    """`n` held-out digit images (n, 8, 8, 1) and their labels; changed by `shift` unless None."""
    from mlstack.data import load_digits_data
    from mlstack.monitor import shifts

    held_out = load_digits_data(None, **DIGITS_SPLIT)
    pick = np.random.default_rng(seed).integers(0, len(held_out.x_test), n)
    images, labels = held_out.x_test[pick], held_out.y_test[pick]
    changed = {
        None: lambda x: x,
        "handwriting": lambda x: shifts.new_handwriting(x, seed),
        "thicker": shifts.thicker_strokes,
        "slant": shifts.slanted,
    }[None if shift is None else check_shift("digits", shift)]
    return changed(images), labels


def requests_for(
    kind: str, n: int, *, seed: int, shift: str | None, batch: int, data: str | None = None
) -> Iterator[tuple[dict, list]]:
    """(JSON body, true labels of its rows) for `n` rows in requests of `batch` rows, moved by
    `shift` (None: in distribution)."""
    from mlstack.data import WINE_FEATURES, WINE_TARGET

    if kind == "wine":
        rows = wine_rows(data, n, seed, shift)
        features = list(WINE_FEATURES)
        for start in range(0, n, batch):
            part = rows.iloc[start : start + batch]
            split = {"columns": features, "data": part[features].to_numpy().tolist()}
            yield {"dataframe_split": split}, part[WINE_TARGET].tolist()
    else:
        images, labels = digit_images(n, seed, shift)
        for start in range(0, n, batch):
            part = slice(start, start + batch)
            yield {"inputs": images[part].tolist()}, labels[part].tolist()


def send(
    url: str,
    kind: str,
    n: int,
    *,
    phase: str,
    traffic: Traffic,
    seed: int,
    batch: int,
    data=None,
    shift: str | None = None,
) -> None:
    """Send `n` rows of `phase` ("clean" or "shifted": by `shift`, else the kind's default) to
    `url`/invocations, recording answers."""
    import requests

    moved = (shift or DEFAULT_SHIFT[kind]) if phase == "shifted" else None
    with requests.Session() as session:
        for body, labels in requests_for(kind, n, seed=seed, shift=moved, batch=batch, data=data):
            traffic.sent += 1
            try:
                answer = session.post(f"{url}/invocations", json=body, timeout=60)
            except requests.RequestException as exc:
                traffic.failed[type(exc).__name__] += 1
                continue
            if answer.status_code != 200:
                traffic.failed[str(answer.status_code)] += 1
                continue
            request_id = answer.headers.get("X-Request-Id", "")
            for row, label in enumerate(labels):
                traffic.labels.append(
                    {"request_id": request_id, "row": row, "label": label, "phase": phase}
                )


def log_offline(
    model_uri: str,
    kind: str,
    n: int,
    directory: Path,
    *,
    shifted: bool = False,
    seed: int = 0,
    data: str | None = None,
    shift: str | None = None,
) -> pd.DataFrame:
    """Score `n` simulated single-row requests with the model in this process and write them
    as the server's prediction log would (Parquet in `directory`): for notebooks, tests and
    benchmarks that need a log without running a server. `shifted`: moved by `shift` (else the
    kind's default). MLflow must point at the model's store already
    (tracking.configure_tracking).

    Returns:
        The labels of what was logged: request_id, row (0) and label (the true value).
    """
    import time
    import uuid

    import mlflow
    import orjson

    from mlstack.logstore import frame_of, new_record
    from mlstack.serving.model import MODEL_URI, resolve_version
    from mlstack.serving.predlog import DirectorySink  # the server's own writer

    moved = (shift or DEFAULT_SHIFT[kind]) if shifted else None
    bodies = list(requests_for(kind, n, seed=seed, shift=moved, batch=1, data=data))
    model = mlflow.pyfunc.load_model(model_uri)
    if kind == "wine":
        split = [body["dataframe_split"] for body, _ in bodies]
        inputs = pd.DataFrame([s["data"][0] for s in split], columns=split[0]["columns"])
    else:
        inputs = np.asarray([body["inputs"][0] for body, _ in bodies], dtype="float32")
    predictions = np.asarray(model.predict(inputs)).tolist()
    match = MODEL_URI.match(model_uri)
    version = resolve_version(model_uri, mlflow.MlflowClient()) if match else None
    now = time.time()
    records = [
        new_record(
            request_id=uuid.uuid4().hex,
            timestamp=now + i * 1e-3,
            model_name=match["name"] if match else None,
            model_version=version,
            run_id=model.metadata.run_id,
            content_type="application/json",
            request=orjson.dumps(body),
            response=orjson.dumps({"predictions": [predictions[i]]}),
        )
        for i, (body, _) in enumerate(bodies)
    ]
    sink = DirectorySink(directory)
    sink.open()
    sink.write(f"predictions-offline-{uuid.uuid4().hex[:8]}", frame_of(records))
    labels = [label for _, (label,) in bodies]
    return pd.DataFrame({"request_id": [r.request_id for r in records], "row": 0, "label": labels})


def model_version(url: str) -> str:
    """The version the server answers with now (or '?' when it does not say)."""
    import requests

    try:
        return str(requests.get(f"{url}/version", timeout=10).json().get("version"))
    except (requests.RequestException, ValueError):
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = cli.OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--server-url", default="http://127.0.0.1:8080", help="our model server")
    p.add_argument("--kind", choices=KINDS, default="wine", help="what the server serves")
    p.add_argument("--clean", type=int, default=200, help="in-distribution rows (default 200)")
    p.add_argument("--shifted", type=int, default=200, help="shifted rows after (default 200)")
    p.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    p.add_argument("--seed", type=int, default=0, help="which rows; the same seed, the same")
    p.add_argument("--data", help="wine CSV (default: as train.py: $MLSTACK_WINE_DATA or UCI)")
    p.add_argument("--labels-out", type=Path, help="write request_id,row,label,phase here")
    p.add_argument("--shift", help="how the shifted rows differ (wine: warm, relations, "
                   "feature:<column>:<sd>; digits: handwriting, thicker, slant)")  # fmt: skip
    args = p.parse_args(argv)
    if args.clean < 0 or args.shifted < 0 or args.batch < 1 or args.clean + args.shifted == 0:
        p.error("--clean and --shifted must be >= 0 (not both 0) and --batch >= 1")
    args.shift = check_shift(args.kind, args.shift or DEFAULT_SHIFT[args.kind])
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: send both phases, say what happened, write the labels."""
    cli.quiet_third_party_logs()
    args = parse_args(argv)
    url = args.server_url.rstrip("/")
    before = model_version(url)
    if before == "?":
        raise UsageError(f"no model server answers at {url}; start one (make serve) or fix it")
    if args.labels_out:  # its folder (e.g. the stack's labels/wine/) first: fail before sending
        args.labels_out.parent.mkdir(parents=True, exist_ok=True)
    traffic = Traffic()
    for phase, n in (("clean", args.clean), ("shifted", args.shifted)):
        if n:
            how = f" ({args.shift})" if phase == "shifted" else ""
            print(f"sending {n} {phase}{how} {args.kind} rows to {url} ...", flush=True)  # noqa: T201
            send(url, args.kind, n, phase=phase, traffic=traffic, seed=args.seed,
                 batch=args.batch, data=args.data, shift=args.shift)  # fmt: skip
    if args.labels_out:
        pd.DataFrame(traffic.labels).to_csv(args.labels_out, index=False)
    after = model_version(url)
    failed = ", ".join(f"{n} x {why}" for why, n in traffic.failed.items()) or "none"
    print(  # noqa: T201
        f"sent {traffic.sent} requests ({args.clean} clean, {args.shifted} shifted rows"
        + (f", shift {args.shift}" if args.shifted else "")
        + "); "
        f"failed: {failed}; served by version {before}"
        + (f" then {after}" if after != before else "")
        + (f"; labels in {args.labels_out}" if args.labels_out else "")
    )
    return 1 if traffic.failures else 0


if __name__ == "__main__":
    sys.exit(cli.run_cli(PROG, main))
