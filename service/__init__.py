"""The batch jobs HTTP API: FastAPI over the Prefect client, no queue or scheduler of its own.

A job is a flow run of one of the deployments in prefect.yaml; the Prefect server stays the
single source of truth. The service adds API keys, ownership, uploads, signed download links
and a camelCase JSON interface (docs/service.md).
"""
