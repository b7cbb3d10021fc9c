"""One module per view family; each exposes a FastAPI ``router``."""
