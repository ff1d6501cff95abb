"""Typed settings, one object per process kind, read from the environment; nothing happens on
import.

Every training, registry, serving and monitoring entry point builds a `Settings` once
(`get_settings()`, which also reads `.env`) and passes it down, so a value has one name
(`MLSTACK_<FIELD>` in the environment) and one default, here. The other process kinds read
only what they need: `ClientSettings` (the web client), `StackSettings` (the native stack) and
`PipelinesSettings` (the retraining runner's command).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJ_ROOT = Path(__file__).resolve().parents[1]

# The UCI red-wine CSV (Cortez et al. 2009, CC BY 4.0).
WINE_DATA_URL = (
    "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/winequality-red.csv"
)


class Settings(BaseSettings):
    """Configuration shared by training, registry and serving code."""

    model_config = SettingsConfigDict(
        env_prefix="MLSTACK_",
        env_file=PROJ_ROOT / ".env",
        extra="ignore",
        populate_by_name=True,
    )

    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MLSTACK_TRACKING_URI"),
        description="MLflow tracking server; unset means the embedded SQLite store.",
    )
    store_dir: Path = Field(
        default=PROJ_ROOT,
        description="Where the embedded store lives: mlflow.db and mlruns/ under it.",
    )
    labels_dir: Path | None = Field(
        default=None,
        description="Where label files for retraining go, one folder per model "
        "(<labels_dir>/<model>/*.csv); unset means <store_dir>/labels.",
    )
    wine_data: str = Field(
        default=WINE_DATA_URL,
        description="Path or http(s) URL of the wine CSV used when --data is not given.",
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "mlstack",
        description="Where downloaded data is kept so it is fetched only once.",
    )
    download_retries: int = Field(default=3, ge=1, description="Attempts per download.")
    download_timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout.")
    server_retries: int = Field(
        default=3,
        ge=0,
        # MLflow's own variable first: a value the user exported for MLflow keeps winning.
        validation_alias=AliasChoices("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLSTACK_SERVER_RETRIES"),
        description="Retries of a failed tracking-server request (MLflow's own default of 7 "
        "with doubling back-off keeps a client waiting ~4 minutes when the server is broken).",
    )

    @property
    def embedded_tracking_uri(self) -> str:
        """SQLite URI of the embedded store (the same file `mlflow ui` opens by default)."""
        return f"sqlite:///{(self.store_dir / 'mlflow.db').resolve()}"

    @property
    def embedded_artifact_root(self) -> Path:
        """Directory holding the embedded store's artifacts."""
        return (self.store_dir / "mlruns").resolve()

    @property
    def labels_path(self) -> Path:
        """The labels directory in use (see labels_dir)."""
        return self.labels_dir or self.store_dir / "labels"

    @property
    def uses_embedded_store(self) -> bool:
        """True when no tracking server is configured."""
        return not self.tracking_uri


def get_settings() -> Settings:
    """Read settings from the environment (and `.env` in the project root)."""
    return Settings()


DEFAULT_CLIENT_SERVER_URL = "http://127.0.0.1:8080"
DEFAULT_CLIENT_MLFLOW_URL = "http://127.0.0.1:5000"
DEFAULT_PREFECT_URL = "http://127.0.0.1:4200/api"


class ClientSettings(BaseSettings):
    """The web client's page (`python -m mlstack.client` sets both for the Streamlit process)."""

    model_config = SettingsConfigDict(env_prefix="MLSTACK_CLIENT_", extra="ignore")

    server_url: str = Field(
        default=DEFAULT_CLIENT_SERVER_URL, description="Our model server, the sidebar's default."
    )
    mlflow_url: str = Field(
        default=DEFAULT_CLIENT_MLFLOW_URL,
        description="The MLflow UI as the browser sees it (the page's links only).",
    )


class StackSettings(BaseSettings):
    """The native stack (`python -m mlstack.stack`): other installs of its server binaries.

    Environment only, no `.env`: these name binaries on this machine, not project settings.
    """

    model_config = SettingsConfigDict(env_prefix="MLSTACK_", extra="ignore", env_ignore_empty=True)

    pg_bin: Path | None = Field(
        default=None, description="PostgreSQL's bin/ directory (initdb, postgres, pg_ctl)."
    )
    weed_bin: Path | None = Field(default=None, description="SeaweedFS' `weed` binary.")


class PipelinesSettings(BaseSettings):
    """`python -m mlstack.pipelines`: Prefect's own variables, read under their own names."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    prefect_api_url: str = Field(
        default=DEFAULT_PREFECT_URL,
        validation_alias="PREFECT_API_URL",
        description="The Prefect server's API (--prefect-url overrides it).",
    )
    prefect_analytics: bool = Field(
        default=False,
        validation_alias="PREFECT_SERVER_ANALYTICS_ENABLED",
        description="Prefect's telemetry; off unless the user turned it on.",
    )
