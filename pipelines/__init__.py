"""pipelines: the ranker cascade, `ask`, the command line, the HTTP server and the distributed path."""
