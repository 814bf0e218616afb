"""Preprocess stage: dataset conversion, audio features, coefficient re-split, statistics."""
