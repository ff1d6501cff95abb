"""Registry workflow on a real (SQLite) store: promotion rule, tags, manual promote, rollback."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from mlstack import registry, wine
from mlstack.errors import UsageError
from mlstack.settings import Settings
from mlstack.tracking import configure_tracking

pytestmark = pytest.mark.slow  # trains models


def _aliases(name: str) -> dict[str, str]:
    aliases = mlflow.MlflowClient().get_registered_model(name).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def _train(settings: Settings, alpha: float, name: str = "wine"):
    return wine.train(wine.WineParams(alpha=alpha), register_as=name, settings=settings)


def test_champion_moves_only_when_rmse_improves(settings: Settings) -> None:
    client = mlflow.MlflowClient
    first = _train(settings, alpha=1.0)
    assert first.promotion.promoted and first.promotion.champion_version is None
    assert _aliases("wine") == {"champion": "1", "challenger": "1"}

    worse = _train(settings, alpha=5.0)
    assert worse.metrics["rmse"] > first.metrics["rmse"]
    assert not worse.promotion.promoted
    assert _aliases("wine") == {"champion": "1", "challenger": "2"}
    tags = client().get_model_version("wine", "2").tags
    assert tags["promotion.decision"] == "kept-champion"
    assert tags["promotion.champion_version"] == "1"
    assert float(tags["promotion.champion_value"]) == pytest.approx(first.metrics["rmse"])
    assert float(tags["promotion.candidate_value"]) == pytest.approx(worse.metrics["rmse"])
    assert "champion stays v1" in worse.promotion.summary()

    better = _train(settings, alpha=0.01)
    assert better.metrics["rmse"] < first.metrics["rmse"]
    assert better.promotion.promoted and better.promotion.champion_version == "1"
    assert _aliases("wine") == {"champion": "3", "challenger": "3"}
    assert client().get_model_version("wine", "3").tags["promotion.decision"] == "promoted"
    assert "champion moved to it" in better.promotion.summary()

    model = mlflow.pyfunc.load_model("models:/wine@champion")
    assert model.metadata.run_id == better.run_id


def test_a_tie_does_not_dethrone_the_champion(settings: Settings) -> None:
    _train(settings, alpha=0.3)
    tie = _train(settings, alpha=0.3)
    assert not tie.promotion.promoted
    assert _aliases("wine")["champion"] == "1"


def test_manual_promote_and_its_refusals(settings: Settings) -> None:
    _train(settings, alpha=0.01)
    _train(settings, alpha=5.0)
    assert registry.promote("wine", "2") == "1"
    assert _aliases("wine")["champion"] == "2"
    tags = mlflow.MlflowClient().get_model_version("wine", "2").tags
    assert tags["promotion.decision"] == "manual-champion"

    with pytest.raises(UsageError, match=r"registered model 'vine' not found \(known: wine\)"):
        registry.promote("vine", "1")
    with pytest.raises(UsageError, match=r"has no version 9 \(versions: 1, 2\)"):
        registry.promote("wine", "9")
    with pytest.raises(UsageError, match="positive integer"):
        registry.promote("wine", "two")
    with pytest.raises(UsageError, match="cannot set alias 'latest'"):
        registry.promote("wine", "1", alias="latest")
    assert _aliases("wine") == {"champion": "2", "challenger": "2"}


def test_failed_registration_is_rolled_back(settings: Settings) -> None:
    """An alias MLflow rejects fails after the version exists: the version must go again."""
    result = _train(settings, alpha=0.5)
    configure_tracking(settings)
    client = mlflow.MlflowClient()

    def register(name: str, **aliases: str) -> None:
        registry.register_and_promote(
            result.model_uri,
            name,
            run_id=result.run_id,
            metric="rmse",
            value=0.1,
            greater_is_better=False,
            **aliases,
        )

    with pytest.raises(MlflowException, match="reserved"):
        register("wine", champion_alias="v1")  # reserved: set_registered_model_alias refuses it
    versions = client.search_model_versions("name='wine'")
    assert [str(v.version) for v in versions] == ["1"]
    assert _aliases("wine") == {"champion": "1", "challenger": "1"}

    with pytest.raises(MlflowException, match="reserved"):
        register("fresh", challenger_alias="latest")
    assert [m.name for m in client.search_registered_models()] == ["wine"]
