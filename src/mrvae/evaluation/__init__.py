"""Evaluation: rate and distortion at fixed β, RD-curve files, β targeting, MIG."""
