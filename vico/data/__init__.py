"""Feature loading (preprocess outputs), training windows, batching and the distributed sampler."""
from .features import ClipFeatures, FeatureStats, check_feature_set, load_clip, load_stats
from .windows import GlobalBatchSampler, WindowDataset, collate, make_windows

__all__ = ["ClipFeatures", "FeatureStats", "check_feature_set", "load_clip", "load_stats", "GlobalBatchSampler",
           "WindowDataset", "collate", "make_windows"]
