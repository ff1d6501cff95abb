"""Model registry workflow with aliases (never the deprecated stages).

A new version gets alias `challenger`; `champion` moves to it only when its held-out metric beats
the current champion's (or there is none). Both are measured on the same rows: training scores
the current champion on the new version's held-out split (the champion's own run's figure is
the fallback when it cannot be loaded). The decision and both metrics are kept as version
tags. Registration is all-or-nothing: if any step fails, the new version is deleted again.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from mlstack.errors import UsageError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "promotion."

# Names end up in URIs such as models:/wine@champion, so keep them URI-safe.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# What log_model returns in MLflow 3: the logged model's id (m- and 32 hex digits).
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]{32})$")


def validate_model_name(name: str) -> str:
    """Return `name` if it is usable in `models:/NAME@alias`, else raise UsageError."""
    if not _MODEL_NAME.match(name or ""):
        raise UsageError(
            f"invalid model name {name!r}; use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit), e.g. --register-as wine"
        )
    return name


@dataclass(frozen=True)
class PromotionRule:
    """How versions of one model are compared: the held-out metric, and which way is better."""

    metric: str
    greater_is_better: bool


@dataclass(frozen=True)
class PromotionDecision:
    """What happened to a newly registered version."""

    model_name: str
    version: str
    metric: str
    greater_is_better: bool
    candidate_value: float
    champion_version: str | None  # the champion before this registration
    champion_value: float | None
    promoted: bool

    def summary(self) -> str:
        """One line for people: version, aliases, and why."""
        head = f"registered {self.model_name} version {self.version} as {CHALLENGER}"
        if self.champion_version is None:
            return f"{head}; no {CHAMPION} yet, so it is now {CHAMPION}"
        cmp = ">" if self.greater_is_better else "<"
        theirs = f"v{self.champion_version} {self.metric}={_fmt(self.champion_value)}"
        ours = f"{self.metric}={_fmt(self.candidate_value)}"
        if self.promoted:
            return f"{head}; {CHAMPION} moved to it ({ours} {cmp} {theirs})"
        return f"{head}; {CHAMPION} stays {theirs} (new {ours} does not beat it)"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _beats(candidate: float, champion: float | None, greater_is_better: bool) -> bool:
    if champion is None or math.isnan(champion):
        return True
    return candidate > champion if greater_is_better else candidate < champion


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _champion_metric(client: MlflowClient, name: str, version: str, metric: str) -> float | None:
    """The champion's held-out metric: from its run, else from the tag we recorded."""
    mv = client.get_model_version(name, version)
    if mv.run_id:
        try:
            value = client.get_run(mv.run_id).data.metrics.get(metric)
        except MlflowException:
            value = None  # the run was deleted; fall back to the tag
        if value is not None:
            return float(value)
    tagged = mv.tags.get(f"{TAG_PREFIX}candidate_value")
    if mv.tags.get(f"{TAG_PREFIX}metric") == metric and tagged not in (None, "none"):
        return float(tagged)
    return None


def register_and_promote(
    model_uri: str,
    name: str,
    *,
    run_id: str,
    metric: str,
    value: float,
    greater_is_better: bool,
    challenger_alias: str = CHALLENGER,
    champion_alias: str = CHAMPION,
    score_champion: Callable[[str], float] | None = None,
    client: MlflowClient | None = None,
) -> PromotionDecision:
    """Register `model_uri` as a new version of `name`, alias it, and apply the promotion rule.

    `model_uri` is what log_model returned (`models:/<model id>`) or a location holding an
    MLmodel. Everything goes through `client` (default: one on the process-wide URIs).
    `score_champion(model_uri)`, when given, measures the current champion on the same rows
    as `value` was; without it (or when it fails) the champion's run's own figure is used.

    Returns:
        The decision, also recorded as `promotion.*` tags on the new version.

    Raises:
        UsageError: for an invalid model name. Any failure after the version was created
            deletes it again (and restores the previous aliases) before re-raising.
    """
    validate_model_name(name)
    client = client or MlflowClient()
    try:  # one request for existence and both aliases
        aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
        model_existed = True
    except MlflowException:
        aliases, model_existed = {}, False
    champion_version = aliases.get(champion_alias)
    # Decide before registering, so the decision and both metrics go in with the version
    # itself (one request instead of one per tag).
    champion_value, scored_on = _champion_score(
        client, name, champion_version, metric, score_champion
    )
    decision = PromotionDecision(
        model_name=name,
        version="",  # known once registered
        metric=metric,
        greater_is_better=greater_is_better,
        candidate_value=value,
        champion_version=champion_version,
        champion_value=champion_value,
        promoted=_beats(value, champion_value, greater_is_better),
    )
    tags = _decision_tags(decision, run_id, scored_on)
    new_version = _create_version(client, name, model_uri, run_id, tags, model_existed)
    moves = [challenger_alias, *([champion_alias] if decision.promoted else [])]
    previous = {challenger_alias: aliases.get(challenger_alias), champion_alias: champion_version}
    _set_aliases(client, name, new_version, moves, previous, model_existed)
    return replace(decision, version=new_version)


def _decision_tags(decision: PromotionDecision, run_id: str, scored_on: str) -> dict[str, str]:
    """The `promotion.*` tags (and the run id) a new version is created with."""
    champion_value = decision.champion_value
    return {
        "run_id": run_id,
        f"{TAG_PREFIX}metric": decision.metric,
        f"{TAG_PREFIX}candidate_value": repr(decision.candidate_value),
        f"{TAG_PREFIX}champion_version": decision.champion_version or "none",
        f"{TAG_PREFIX}champion_value": "none" if champion_value is None else repr(champion_value),
        f"{TAG_PREFIX}champion_scored_on": scored_on,
        f"{TAG_PREFIX}decision": "promoted" if decision.promoted else "kept-champion",
    }


def _set_aliases(
    client: MlflowClient,
    name: str,
    version: str,
    moves: list[str],
    previous: dict[str, str | None],
    model_existed: bool,
) -> None:
    """Point each alias in `moves` at `version`; on any failure undo the whole registration
    (see _rollback), then re-raise."""
    try:
        for alias in moves:
            client.set_registered_model_alias(name, alias, version)
    except BaseException:
        _rollback(client, name, version, model_existed, previous)
        raise


def _champion_score(
    client: MlflowClient,
    name: str,
    champion_version: str | None,
    metric: str,
    score_champion: Callable[[str], float] | None,
) -> tuple[float | None, str]:
    """(the champion's metric, where it was measured): on this version's held-out split when
    `score_champion` can score it, else its own run's figure; (None, "none") without one."""
    if not champion_version:
        return None, "none"
    if score_champion is not None:
        try:
            value = score_champion(f"models:/{name}/{champion_version}")
            return value, "this version's held-out split"
        except Exception as exc:  # a champion that cannot load: its own figure decides
            log.warning("could not score %s v%s here (%s)", name, champion_version, exc)
    return _champion_metric(client, name, champion_version, metric), "its own run's held-out split"


def _create_version(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    model_existed: bool,
) -> str:
    """Create (the registered model if missing and) a new version of `name` from `model_uri`,
    waited on until READY; its version number. A registered model made here for a version that
    could not be created is deleted again."""
    source, source_run_id, model_id = _version_source(client, model_uri)
    if not model_existed:
        try:
            client.create_registered_model(name)
        except MlflowException as exc:  # created meanwhile by someone else: use it
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            model_existed = True
    try:
        # create_model_version waits (up to 5 min) until the version is READY.
        mv = client.create_model_version(
            name, source, run_id=source_run_id or run_id, tags=tags, model_id=model_id
        )
    except BaseException:
        if not model_existed:
            _delete_quietly(client, name)
        raise
    version = str(mv.version)  # stores differ: int from SQL stores, str over REST
    if model_id:
        _link_logged_model(client, model_id, name, version)
    return version


def _version_source(client: MlflowClient, model_uri: str) -> tuple[str, str | None, str | None]:
    """(source, run id, logged-model id) of a new version of `model_uri`.

    A logged model keeps MLflow's own source, `models:/<model id>` (the UI links the version
    to its logged model by it), where the store resolves that the same way `client` would: a
    tracking server does, but an in-process SQL store looks it up on the process-wide tracking
    URI. When that names another store, the source is the artifact location `client` finds.
    """
    match = _LOGGED_MODEL_URI.match(model_uri)
    if not match:
        return model_uri, None, None
    logged = client.get_logged_model(match["model_id"])
    resolved_alike = client.tracking_uri.startswith(("http://", "https://")) or (
        mlflow.get_tracking_uri() == client.tracking_uri
    )
    source = model_uri if resolved_alike else logged.artifact_location
    return source, logged.source_run_id, logged.model_id


def _link_logged_model(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """List the new version on its logged model (tag `mlflow.modelVersions`), as
    mlflow.register_model does: the MLflow UI shows it on the model's page."""
    entry = {"name": name, "version": version}
    try:
        existing = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
        listed = json.loads(existing) if existing else []
        if entry not in listed:
            client.set_logged_model_tags(
                model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*listed, entry])}
            )
    except MlflowException as exc:  # the version exists and works; only the link is missing
        log.warning("could not list %s v%s on logged model %s: %s", name, version, model_id, exc)


def _delete_quietly(client: MlflowClient, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        log.error("could not delete the empty registered model %s again: %s", name, exc)


def load_pyfunc(model_uri: str, client: MlflowClient) -> Any:
    """Load `model_uri` as a pyfunc model from `client`'s own store, whatever the process-wide
    URIs are: `models:/NAME/N`, `models:/NAME@ALIAS` and `models:/<model id>` are resolved by
    `client`, the files downloaded (to a new temporary directory) and loaded from there.

    Returns:
        The loaded mlflow.pyfunc.PyFuncModel.
    """
    import mlflow.artifacts
    import mlflow.pyfunc

    location = model_location(model_uri, client)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=location, tracking_uri=client.tracking_uri
    )
    return mlflow.pyfunc.load_model(local)


def model_location(model_uri: str, client: MlflowClient) -> str:
    """Where the files of `model_uri` are (a `models:/` URI resolved by `client`; any other
    URI, such as `runs:/...` or a path, as given)."""
    # The registry-URI grammar and its resolution are the server's (a light module).
    from mlstack.serving.model import MODEL_URI, resolve_version

    if logged := _LOGGED_MODEL_URI.match(model_uri):
        return client.get_logged_model(logged["model_id"]).artifact_location
    version = resolve_version(model_uri, client)
    if version is None:
        return model_uri
    return client.get_model_version_download_uri(MODEL_URI.match(model_uri)["name"], version)


def register_if_asked(
    model_uri: str,
    register_as: str | None,
    *,
    run_id: str,
    metrics: dict[str, float],
    rule: PromotionRule,
    score: Callable[[Any], float] | None = None,
    client: MlflowClient | None = None,
) -> PromotionDecision | None:
    """Register and promote (register_and_promote) when `register_as` names a model; the
    decision, or None when no registration was asked for. `score(pyfunc_model)` measures a
    model on this run's held-out split, to score the champion on the same rows. `client`
    (default: one on the process-wide URIs) registers, and loads the champion."""
    if not register_as:
        return None
    client = client or MlflowClient()

    def score_champion(uri: str) -> float:
        return score(load_pyfunc(uri, client))  # type: ignore[misc]

    return register_and_promote(
        model_uri,
        register_as,
        run_id=run_id,
        metric=rule.metric,
        value=metrics[rule.metric],
        greater_is_better=rule.greater_is_better,
        score_champion=score_champion if score else None,
        client=client,
    )


def _registered_model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


def _rollback(
    client: MlflowClient,
    name: str,
    version: str,
    model_existed: bool,
    previous_aliases: dict[str, str | None],
) -> None:
    """Undo a half-done registration so the registry looks as it did before."""
    log.warning("registration of %s version %s failed; removing it again", name, version)
    try:
        client.delete_model_version(name, version)  # also drops aliases pointing at it
        for alias, old_version in previous_aliases.items():
            if old_version is not None:
                client.set_registered_model_alias(name, alias, old_version)
        if not model_existed and not client.search_model_versions(f"name='{name}'"):
            client.delete_registered_model(name)
    except MlflowException as exc:  # keep the original error; say what is left behind
        log.error("rollback of %s version %s incomplete: %s", name, version, exc)


def promote(
    name: str,
    version: str | int,
    *,
    alias: str = CHAMPION,
    client: MlflowClient | None = None,
) -> str | None:
    """Point `alias` of model `name` at `version` by hand.

    Returns:
        The version the alias pointed to before (None if it was unset).

    Raises:
        UsageError: unknown model, unknown version, or a malformed version/alias.
    """
    client = client or MlflowClient()
    version = str(version).strip()
    if not version.isdigit():
        raise UsageError(f"version must be a positive integer, got {version!r}; e.g. --version 3")
    if not _registered_model_exists(client, name):
        known = sorted(m.name for m in client.search_registered_models())
        listed = ", ".join(known) if known else "none registered yet"
        raise UsageError(
            f"registered model {name!r} not found (known: {listed}); check --name, "
            "or train with --register-as NAME first"
        )
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    if int(version) not in versions:
        listed = ", ".join(map(str, versions)) or "none"
        raise UsageError(
            f"model {name!r} has no version {version} (versions: {listed}); pick one of those"
        )
    previous = _alias_version(client, name, alias)
    try:
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        raise UsageError(
            f"cannot set alias {alias!r}: {exc.message}; choose another alias"
        ) from exc
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}decision", f"manual-{alias}")
    return previous
