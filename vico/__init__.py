"""ViCo speaker and listener sequence models: ``python -m vico.train`` and ``python -m vico.eval``."""
