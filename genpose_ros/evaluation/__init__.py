"""Evaluation: NOCS metrics, `genpose eval` and `genpose bench`."""
