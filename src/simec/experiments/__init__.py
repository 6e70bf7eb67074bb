"""Reproductions of the papers' experiments, as resumable runs that write tables and figures."""
