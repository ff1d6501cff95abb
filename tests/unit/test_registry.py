"""Registry workflow on a real (SQLite) store: promotion rule, tags, manual promote, rollback,
and registering and loading through an explicit client whatever the process-wide URIs name."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from mlstack import registry, wine
from mlstack.errors import UsageError
from mlstack.settings import Settings
from mlstack.tracking import configure_tracking, tracking_client

pytestmark = pytest.mark.slow  # trains models


def _aliases(settings: Settings, name: str) -> dict[str, str]:
    aliases = tracking_client(settings).get_registered_model(name).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def _train(settings: Settings, alpha: float, name: str = "wine"):
    return wine.train(wine.WineParams(alpha=alpha), register_as=name, settings=settings)


def test_champion_moves_only_when_rmse_improves(settings: Settings) -> None:
    client = tracking_client(settings)
    first = _train(settings, alpha=1.0)
    assert first.promotion.promoted and first.promotion.champion_version is None
    assert _aliases(settings, "wine") == {"champion": "1", "challenger": "1"}

    worse = _train(settings, alpha=5.0)
    assert worse.metrics["rmse"] > first.metrics["rmse"]
    assert not worse.promotion.promoted
    assert _aliases(settings, "wine") == {"champion": "1", "challenger": "2"}
    tags = client.get_model_version("wine", "2").tags
    assert tags["promotion.decision"] == "kept-champion"
    assert tags["promotion.champion_version"] == "1"
    assert float(tags["promotion.champion_value"]) == pytest.approx(first.metrics["rmse"])
    assert float(tags["promotion.candidate_value"]) == pytest.approx(worse.metrics["rmse"])
    assert "champion stays v1" in worse.promotion.summary()

    better = _train(settings, alpha=0.01)
    assert better.metrics["rmse"] < first.metrics["rmse"]
    assert better.promotion.promoted and better.promotion.champion_version == "1"
    assert _aliases(settings, "wine") == {"champion": "3", "challenger": "3"}
    v3 = client.get_model_version("wine", "3")
    assert v3.tags["promotion.decision"] == "promoted"
    # MLflow's own source for a logged model: the UI links the version to it by this.
    assert (v3.source, v3.run_id) == (better.model_uri, better.run_id)
    assert "champion moved to it" in better.promotion.summary()

    model = registry.load_pyfunc("models:/wine@champion", client)
    assert model.metadata.run_id == better.run_id


def test_a_tie_does_not_dethrone_the_champion(settings: Settings) -> None:
    _train(settings, alpha=0.3)
    tie = _train(settings, alpha=0.3)
    assert not tie.promotion.promoted
    assert _aliases(settings, "wine")["champion"] == "1"


def test_manual_promote_and_its_refusals(settings: Settings) -> None:
    _train(settings, alpha=0.01)
    _train(settings, alpha=5.0)
    client = tracking_client(settings)
    assert registry.promote("wine", "2", client=client) == "1"
    assert _aliases(settings, "wine")["champion"] == "2"
    tags = client.get_model_version("wine", "2").tags
    assert tags["promotion.decision"] == "manual-champion"

    with pytest.raises(UsageError, match=r"registered model 'vine' not found \(known: wine\)"):
        registry.promote("vine", "1", client=client)
    with pytest.raises(UsageError, match=r"has no version 9 \(versions: 1, 2\)"):
        registry.promote("wine", "9", client=client)
    with pytest.raises(UsageError, match="positive integer"):
        registry.promote("wine", "two", client=client)
    with pytest.raises(UsageError, match="cannot set alias 'latest'"):
        registry.promote("wine", "1", alias="latest", client=client)
    assert _aliases(settings, "wine") == {"champion": "2", "challenger": "2"}


def test_failed_registration_is_rolled_back(settings: Settings) -> None:
    """An alias MLflow rejects fails after the version exists: the version must go again."""
    result = _train(settings, alpha=0.5)
    client = tracking_client(settings)

    def register(name: str, **aliases: str) -> None:
        registry.register_and_promote(
            result.model_uri,
            name,
            run_id=result.run_id,
            metric="rmse",
            value=0.1,
            greater_is_better=False,
            client=client,
            **aliases,
        )

    with pytest.raises(MlflowException, match="reserved"):
        register("wine", champion_alias="v1")  # reserved: set_registered_model_alias refuses it
    versions = client.search_model_versions("name='wine'")
    assert [str(v.version) for v in versions] == ["1"]
    assert _aliases(settings, "wine") == {"champion": "1", "challenger": "1"}

    with pytest.raises(MlflowException, match="reserved"):
        register("fresh", challenger_alias="latest")
    assert [m.name for m in client.search_registered_models()] == ["wine"]


def test_register_and_load_go_through_the_client_not_the_global_uri(
    settings: Settings, tmp_path
) -> None:
    """With the process-wide URIs on another store, a client on ours registers, links the
    version to its logged model and run, and loads what it registered."""
    result = _train(settings, alpha=0.5)
    elsewhere = Settings(_env_file=None, tracking_uri=None, store_dir=tmp_path / "elsewhere")
    configure_tracking(elsewhere)
    client = tracking_client(settings)
    decision = registry.register_and_promote(
        result.model_uri,
        "wine-explicit",
        run_id=result.run_id,
        metric="rmse",
        value=result.metrics["rmse"],
        greater_is_better=False,
        client=client,
    )
    assert decision.version == "1" and decision.promoted
    mv = client.get_model_version("wine-explicit", "1")
    assert (mv.run_id, mv.status) == (result.run_id, "READY")
    model_id = result.model_uri.removeprefix("models:/")
    assert mv.source == client.get_logged_model(model_id).artifact_location
    linked = client.get_logged_model(model_id).tags["mlflow.modelVersions"]
    assert {"name": "wine-explicit", "version": "1"} in json.loads(linked)
    for uri in ("models:/wine-explicit@champion", "models:/wine-explicit/1", result.model_uri):
        assert registry.load_pyfunc(uri, client).metadata.run_id == result.run_id
    # Nothing reached the store the process-wide URIs name.
    assert tracking_client(elsewhere).search_registered_models() == []
    with pytest.raises(MlflowException):
        mlflow.pyfunc.load_model("models:/wine-explicit/1")  # what a global lookup would find
