"""Layers: each a mapping over the store below it, adding one feature (see store/stack.py's registry)."""
