"""Bulk ingestion and background embedding.

``sources`` reads products from a folder or a CSV/JSON Lines file; ``bulk`` writes them to the
catalog and then drains the embedding queue (``lookalike ingest``); ``worker`` is the embedding
worker both ``lookalike ingest`` and the API's background thread run, built from ``batch`` (one
claimed batch), ``lanes`` (batches on several threads), ``background`` (the API's loop) and
``maintenance`` (index upkeep); ``progress`` counts; ``reembed`` switches the CLIP model.
"""
