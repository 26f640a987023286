"""Benchmarks of noisylayers against plain Keras, tfp.layers and the naive recipe.

Run `python benchmarks/run.py --help` from the repository root.
"""
