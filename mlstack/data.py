"""Data loaders: the wine-quality CSV (download once + cache, or a local path; schema-checked)
and handwritten digits (scikit-learn's 8x8 set offline, or an MNIST-style `.npz`).

Every problem a user can fix raises `UsageError` with the source, the problem and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from mlstack.errors import UsageError

if TYPE_CHECKING:  # the client image imports this module and has no pydantic
    from mlstack.settings import Settings

log = logging.getLogger(__name__)

WINE_FEATURES: tuple[str, ...] = (
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)
WINE_TARGET = "quality"
BUILTIN_DIGITS = "sklearn.datasets.load_digits"  # the digits' data_source when --data is not given
MIN_ROWS = 10  # below this a train/test split and any metric are meaningless

DATA_FIX = "pass --data PATH_OR_URL or set MLSTACK_WINE_DATA"
CSV_SEPARATORS = ";,"  # what csv_separator chooses between
SNIFF_LINES = 20  # the lines csv_separator reads: a header and enough rows to be sure


@dataclass(frozen=True)
class WineData:
    """A schema-checked wine table and where it came from."""

    frame: pd.DataFrame
    source: str  # what the user gave: a path or URL
    path: Path  # the local file that was read (the cache file for URLs)

    @property
    def features(self) -> pd.DataFrame:
        """The 11 feature columns, float64, in canonical order."""
        return self.frame[list(WINE_FEATURES)]

    @property
    def target(self) -> pd.Series:
        """The integer quality score."""
        return self.frame[WINE_TARGET]

    def with_labelled(self, rows: pd.DataFrame) -> WineData:
        """This table plus labelled rows (the 11 features and quality); source and path stay
        the original file's."""
        missing = [c for c in (*WINE_FEATURES, WINE_TARGET) if c not in rows]
        if missing:
            raise UsageError(
                f"labelled wine rows lack {missing}; they need the 11 features and quality"
            )
        extra = rows[[*WINE_FEATURES, WINE_TARGET]].astype(self.frame.dtypes.to_dict())
        frame = pd.concat([self.frame, extra], ignore_index=True)
        return WineData(frame=frame, source=self.source, path=self.path)


def is_url(source: str) -> bool:
    """True for http(s) URLs, which are downloaded; anything else is a local path."""
    return urlparse(source).scheme in ("http", "https")


def cache_path_for(url: str, cache_dir: Path) -> Path:
    """The cache file a URL downloads to: stable per URL, readable name."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    name = Path(urlparse(url).path).name or "download"
    return cache_dir / f"{digest}-{name}"


def download(url: str, dest: Path, *, retries: int = 3, timeout_s: float = 30.0) -> Path:
    """Download `url` to `dest` with a progress bar, retrying transient failures.

    The file appears at `dest` only when complete (written to `.part`, then renamed), so an
    interrupted download never leaves a half file in the cache.

    Returns:
        `dest`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    problem = ""
    for attempt in range(1, retries + 1):
        problem = _download_once(url, dest, timeout_s)
        if problem is None:
            return dest
        if attempt < retries:
            delay = 0.5 * 2 ** (attempt - 1)
            log.warning(
                "download of %s failed (%s); retry %d/%d in %.1fs",
                url,
                problem,
                attempt,
                retries - 1,
                delay,
            )
            time.sleep(delay)
    raise UsageError(
        f"cannot download {url} after {retries} attempts ({problem}); "
        f"check the network or {DATA_FIX} with a local file"
    )


def _download_once(url: str, dest: Path, timeout_s: float) -> str | None:
    """One attempt: None once `dest` is complete, else the transient problem in a few words.

    Raises UsageError for an HTTP client error (4xx but 429): retrying cannot fix it.
    """
    import requests

    part = dest.with_name(dest.name + ".part")
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as resp:
            if resp.status_code == 429 or resp.status_code >= 500:
                return f"HTTP {resp.status_code}"
            if resp.status_code >= 400:
                raise UsageError(
                    f"cannot download {url}: HTTP {resp.status_code}; "
                    f"check the URL or {DATA_FIX} with a local file"
                )
            _save_body(resp, part, label=dest.name)
            os.replace(part, dest)
            return None
    except requests.RequestException as exc:
        return _network_reason(exc)
    finally:
        part.unlink(missing_ok=True)


def _save_body(resp: Any, part: Path, *, label: str) -> None:
    """Stream a `requests` response's body to `part`, with a progress bar on a terminal."""
    from tqdm import tqdm

    total = int(resp.headers.get("content-length") or 0) or None
    with (
        open(part, "wb") as out,
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"downloading {label}",
            disable=None,  # no bar when stderr is not a terminal
        ) as bar,
    ):
        for chunk in resp.iter_content(chunk_size=1 << 16):
            out.write(chunk)
            bar.update(len(chunk))


def _network_reason(exc: Exception) -> str:
    """A few words for a failed request; requests' own messages run to several lines."""
    import requests

    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "host name not found"
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    return type(exc).__name__


def fetch(source: str, settings: Settings) -> Path:
    """Return a local file for `source`: the path itself, or the cached download of a URL."""
    if is_url(source):
        cached = cache_path_for(source, settings.cache_dir)
        if cached.is_file():
            log.info("using cached %s (from %s)", cached, source)
            return cached
        log.info("downloading %s to %s", source, cached)
        return download(
            source,
            cached,
            retries=settings.download_retries,
            timeout_s=settings.download_timeout_s,
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"wine data not found: {source} does not exist; {DATA_FIX}")
    if not path.is_file():
        raise UsageError(f"wine data {source} is not a file; {DATA_FIX}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"wine data {source} is not readable (permissions); {DATA_FIX}")
    return path


def csv_separator(text: str) -> str:
    """The field separator of CSV text, `;` or `,`, as csv.Sniffer reads its first lines.

    The UCI wine file is `;`-separated with a quoted header; pandas, spreadsheets and most other
    tools export `,`. Returns `,` when the sample does not tell (one column, empty, not text).
    """
    sample = "\n".join(text.splitlines()[:SNIFF_LINES])
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_SEPARATORS).delimiter
    except csv.Error:
        return ","


def _file_separator(path: Path) -> str:
    """csv_separator of a file's first lines."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return csv_separator("".join(itertools.islice(fh, SNIFF_LINES)))


def read_wine_csv(path: Path, source: str | None = None) -> pd.DataFrame:
    """Read a wine CSV (`;` or `,` separated) and check its schema.

    Returns:
        A frame with the 11 features as float64 and `quality` as int64, in canonical order.
    """
    origin = source or str(path)
    try:
        # keep_default_na=False keeps "n/a" or "" as text, so an error can quote the raw cell.
        frame = pd.read_csv(path, sep=_file_separator(path), keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"cannot parse wine data {origin} as CSV ({first}); {DATA_FIX} with the UCI CSV"
        ) from exc
    return validate_wine_frame(frame, origin)


def validate_wine_frame(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Check columns, types and size of a wine table.

    Returns:
        The canonical frame (features float64, `quality` int64).

    Raises:
        UsageError: naming the missing columns, the non-numeric column, or the bad target.
    """
    frame = frame.rename(columns=lambda c: str(c).strip())
    expected = [*WINE_FEATURES, WINE_TARGET]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise UsageError(
            f"wine data {origin} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"expected the 11 UCI feature columns plus integer '{WINE_TARGET}'"
        )
    out = pd.DataFrame(index=frame.index)
    for col in WINE_FEATURES:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UsageError(
                f"wine data {origin}: column '{col}' has a missing or non-numeric value "
                f"(first at data row {row + 1}: {frame[col].iloc[row]!r}); clean the file"
            )
        out[col] = values.astype("float64")
    quality = pd.to_numeric(frame[WINE_TARGET], errors="coerce")
    if quality.isna().any() or not np.all(np.mod(quality, 1) == 0):
        raise UsageError(
            f"wine data {origin}: column '{WINE_TARGET}' must hold integers (scores 0-10); "
            "clean the file"
        )
    out[WINE_TARGET] = quality.astype("int64")
    if len(out) < MIN_ROWS:
        raise UsageError(
            f"wine data {origin} has {len(out)} rows; need at least {MIN_ROWS} to split and score"
        )
    return out.reset_index(drop=True)


def load_wine(source: str | None, settings: Settings) -> WineData:
    """Load the wine table from `source` (path or URL), or `settings.wine_data` when None/empty."""
    chosen = source or settings.wine_data
    path = fetch(chosen, settings)
    return WineData(frame=read_wine_csv(path, chosen), source=chosen, path=path)


# --- digits -------------------------------------------------------------------------------

NUM_DIGIT_CLASSES = 10


@dataclass(frozen=True)
class DigitsData:
    """Images as float32 in [0, 1] with a channel axis (N, H, W, 1) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def with_labelled(
        self, images: np.ndarray, labels: np.ndarray, *, test_size: float, seed: int
    ) -> DigitsData:
        """These digits plus labelled images (same shape), split with the same test share, so
        the held-out part has new rows too."""
        from sklearn.model_selection import train_test_split

        if images.shape[1:] != self.x_train.shape[1:]:
            raise UsageError(
                f"labelled images have shape {images.shape[1:]}, the data {self.image_shape}"
            )
        if len(images) < 2:
            x_tr, x_te, y_tr, y_te = images, images[:0], labels, labels[:0]
        else:
            x_tr, x_te, y_tr, y_te = train_test_split(
                images, labels, test_size=test_size, random_state=seed
            )
        return DigitsData(
            np.concatenate([self.x_train, x_tr.astype("float32")]),
            np.concatenate([self.y_train, y_tr.astype("int64")]),
            np.concatenate([self.x_test, x_te.astype("float32")]),
            np.concatenate([self.y_test, y_te.astype("int64")]),
            source=self.source,
        )


def _as_images(x: np.ndarray, origin: str, key: str) -> np.ndarray:
    """Shape to (N, H, W, 1) float32 in [0, 1]."""
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise UsageError(
            f"digits data {origin}: '{key}' has shape {x.shape}; expected (N, height, width) "
            "grayscale images as in Keras' mnist.npz"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise UsageError(f"digits data {origin}: '{key}' is not numeric ({x.dtype})")
    scale = 255.0 if x.dtype == np.uint8 else max(float(np.max(x)), 1.0)
    return (x.astype("float32") / scale)[..., None]


def _as_labels(y: np.ndarray, n: int, origin: str, key: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise UsageError(f"digits data {origin}: '{key}' has {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= NUM_DIGIT_CLASSES:
        raise UsageError(f"digits data {origin}: '{key}' must hold integer labels 0-9")
    return y.astype("int64")


def load_digits_data(path: str | None, *, test_size: float, seed: int) -> DigitsData:
    """Load digits: scikit-learn's 8x8 set when `path` is None/empty, else an `.npz` file.

    The `.npz` holds `x_train, y_train, x_test, y_test` (Keras' mnist.npz layout) or `x, y`
    (split here with `test_size` and `seed`).
    """
    from sklearn.model_selection import train_test_split

    if not path:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images / 16.0).astype("float32")[..., None]
        y = bunch.target.astype("int64")
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
        return DigitsData(x_tr, y_tr, x_te, y_te, source=BUILTIN_DIGITS)

    fix = "pass --data with a Keras-style mnist.npz, or omit it for the built-in 8x8 digits"
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"digits data not found: {path} is not a file; {fix}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read digits data {path} as .npz ({exc}); {fix}") from exc

    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        x_tr = _as_images(arrays["x_train"], path, "x_train")
        x_te = _as_images(arrays["x_test"], path, "x_test")
        y_tr = _as_labels(arrays["y_train"], len(x_tr), path, "y_train")
        y_te = _as_labels(arrays["y_test"], len(x_te), path, "y_test")
    elif {"x", "y"} <= arrays.keys():
        x = _as_images(arrays["x"], path, "x")
        y = _as_labels(arrays["y"], len(x), path, "y")
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed)
    else:
        raise UsageError(
            f"digits data {path} has arrays {sorted(arrays)}; expected x_train, y_train, "
            f"x_test, y_test (or x, y); {fix}"
        )
    if len(x_tr) < MIN_ROWS or len(x_te) < 1:
        raise UsageError(f"digits data {path} is too small to train and test on")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise UsageError(f"digits data {path}: train and test images differ in shape")
    return DigitsData(x_tr, y_tr, x_te, y_te, source=str(file))
