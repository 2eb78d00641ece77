"""Data contract, code tables, X12 in/out and point-in-time feature transformers.

Imports nothing else of ours: the simulator, training and serving all build on it.
"""
