"""Billstream benchmarks: every hot path measured against a baseline run side by side.

.venv/bin/python -m bench [--quick] [--only appends,http,...]   (expects the stack from `make up`)
"""
