"""Shipping prices."""
