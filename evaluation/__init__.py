"""ViCo evaluation stage: ``python -m evaluation.evaluate`` (all metrics, one pass) and
``python -m evaluation.score`` (challenge rank sum). Library code: ``metrics/`` (one module per
metric and the one-pass engine), ``networks/`` (Inception, iresnet100, SyncNet with the released
files' parameter names), ``lipsync/`` (the in-memory face tracking and crop pipeline)."""
