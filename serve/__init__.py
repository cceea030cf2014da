"""`retro serve`: the index opened once, the models warm, many clients over HTTP (FastAPI + uvicorn)."""
