"""Storage backends: string keys to byte values, each in its own module (see store/stack.py's registry)."""
