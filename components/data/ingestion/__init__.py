"""The ingestion core: decode drop files, validate, pseudonymise, deduplicate, store.

The stage (:mod:`components.data.ingest`) wires these steps over a drop folder; serving reuses
the same decode, validation and processing steps for events posted to its API.
"""
