"""Bulk ingestion and background embedding.

``sources`` reads products from a folder or a CSV/JSON Lines file, ``sync`` writes them to the
catalog and decides which need a new embedding, ``worker`` claims and embeds pending rows (the
same code runs in ``lookalike ingest`` and in the API's background thread), ``progress`` counts,
``reembed`` switches the CLIP model.
"""
