"""Prefect's environment for the project's own processes: no telemetry, and Prefect's state in
a folder of the project's instead of the shared ``~/.prefect``.

Prefect reads its settings once, when it is first imported, so ``apply()`` runs before that:
the CLI calls it on import, and so does the ``flows`` package. A variable the user set is never
changed. Why:

- every run printed "Failed to send telemetry" (this machine has no route out; a clinic's may
  not either), and nothing about a clinic's runs should leave it unasked;
- two processes sharing ``~/.prefect/prefect.db`` (a demo and a test run, say) printed
  Prefect's "database is locked" traceback.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

# Every switch that makes Prefect (client or its temporary server) call home.
NO_TELEMETRY = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",  # Prefect's SDK analytics honour the common opt-out
}
# A temporary server (a flow run with no server configured) gets longer than Prefect's 20 s to
# start: on a busy machine the default made `campaign demo --prefect` fail with a timeout.
SLOW_START = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
HOME_FOLDER = ".prefect"  # in the current folder, beside the default campaign.db

# What apply() and use_home() set, so that a later, more specific choice (the demo's folder)
# may replace a value of ours but never the user's.
_ours: dict[str, str] = {}


def apply(environ: dict[str, str] | None = None, *, cwd: Path | None = None) -> None:
    """Set the defaults above in `environ` (default: os.environ) where they are unset."""
    env = os.environ if environ is None else environ
    for name, value in {**NO_TELEMETRY, **SLOW_START}.items():
        _default(env, name, value)
    if "PREFECT_HOME" not in env:  # a home chosen before (the demo's folder) stays
        use_home((cwd or Path.cwd()) / HOME_FOLDER, env)


def use_home(folder: Path, environ: dict[str, str] | None = None) -> None:
    """Keep Prefect's state (its database, its results) in `folder`, unless the user chose one.

    The user's Prefect profiles (``~/.prefect/profiles.toml``, where `prefect config set` puts a
    PREFECT_API_URL) stay in use: only the state moves."""
    env = os.environ if environ is None else environ
    _default(env, "PREFECT_HOME", str(Path(folder).resolve()))
    profiles = Path(env.get("HOME", str(Path.home()))) / ".prefect" / "profiles.toml"
    if profiles.exists():
        _default(env, "PREFECT_PROFILES_PATH", str(profiles))


def _default(env, name: str, value: str) -> None:
    if name not in env or env[name] == _ours.get(name):
        env[name] = value
        _ours[name] = value


def configured_api_url(environ: dict[str, str] | None = None, *, cwd: Path | None = None) -> str | None:
    """The Prefect server this process would use, or None when none is configured (then running
    a flow would start a temporary server, 10+ s). Read the way Prefect reads it, without
    importing Prefect (about 2 s) unless it is imported already: PREFECT_API_URL in the
    environment, then (Prefect loaded) its own settings, then a `.env`, `prefect.toml` or
    `pyproject.toml` ([tool.prefect]) in the current folder, then the active profile."""
    env = os.environ if environ is None else environ
    if url := env.get("PREFECT_API_URL"):
        return url
    if environ is None and "prefect.settings" in sys.modules:  # its settings, temporary ones included
        from prefect.settings import get_current_settings

        return get_current_settings().api.url or None
    folder = cwd or Path.cwd()
    dotenv = _dotenv(folder / ".env")
    if url := dotenv.get("PREFECT_API_URL"):
        return url
    for name, keys in (
        ("prefect.toml", ("api", "url")),
        ("pyproject.toml", ("tool", "prefect", "api", "url")),
    ):
        if url := _toml_value(folder / name, keys):
            return url
    profiles = _toml(_profiles_path(env, dotenv))
    active = env.get("PREFECT_PROFILE") or profiles.get("active")
    return profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or None


def _profiles_path(env, dotenv: dict[str, str]) -> Path:
    """Where Prefect looks for profiles.toml (prefect.settings.sources._get_profiles_path)."""
    if path := env.get("PREFECT_PROFILES_PATH") or dotenv.get("PREFECT_PROFILES_PATH"):
        return Path(path)
    if home := env.get("PREFECT_HOME"):
        return Path(home) / "profiles.toml"
    return Path(env.get("HOME", str(Path.home()))) / ".prefect" / "profiles.toml"


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _toml_value(path: Path, keys: tuple[str, ...]):
    value = _toml(path)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v}
