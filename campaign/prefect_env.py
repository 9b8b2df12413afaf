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
from pathlib import Path

# Every switch that makes Prefect (client or its temporary server) call home.
NO_TELEMETRY = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",  # Prefect's SDK analytics honour the common opt-out
}
HOME_FOLDER = ".prefect"  # in the current folder, beside the default campaign.db

# What apply() and use_home() set, so that a later, more specific choice (the demo's folder)
# may replace a value of ours but never the user's.
_ours: dict[str, str] = {}


def apply(environ: dict[str, str] | None = None, *, cwd: Path | None = None) -> None:
    """Set the defaults above in `environ` (default: os.environ) where they are unset."""
    env = os.environ if environ is None else environ
    for name, value in NO_TELEMETRY.items():
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
