"""Turning episodes into E2WM's natural-language training text."""
