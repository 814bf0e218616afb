"""Checkpoint handling and batched rendering shared by the PIRender scripts."""
