"""The PIRender LMDB layout (reader, key format) and the per-video packing work."""
