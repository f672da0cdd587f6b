"""Distributed prediction on existing engines (``thrifty predict --engine ray``); optional extras."""
