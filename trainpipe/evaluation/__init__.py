"""Metrics, slices and gates."""
