"""Prefect flows: what runs when, retries, batching. No business rules here (see campaign/)."""
