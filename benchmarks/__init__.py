"""Benchmarks of noisylayers against plain Keras, tfp.layers and the naive recipe.

Run `python -m benchmarks.run --help` from the repository root (every
benchmark runs as a module: `python -m benchmarks.NAME`; see README.md).
"""
