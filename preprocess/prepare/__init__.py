"""Library of ``preprocess.prepare_videos``: timing (30 fps resampling), framing (face box), clip
(one pair: decode, crop, encode, audio)."""
