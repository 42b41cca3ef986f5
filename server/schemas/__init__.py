"""The JSON the coordinator's API answers with, one pydantic model per shape, so /openapi.json documents it;
the read-only views in server/queries.py are built from these models."""
