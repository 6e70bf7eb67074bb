"""Figures (PNG) and the HTML report."""
