"""Wire protocols: one module per way records arrive."""
