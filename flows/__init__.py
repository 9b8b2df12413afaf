"""Prefect flows: what runs when, retries, batching. No business rules here (see campaign/)."""

from campaign import prefect_env

# Before a flow module imports Prefect: no telemetry, and Prefect's state out of ~/.prefect.
prefect_env.apply()
