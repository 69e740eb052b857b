"""Serving on Ray Serve.

    app          `vljepa serve` and the application builder (args: its arguments)
    ingress      the HTTP ingress (FastAPI): validation, auth, size limit; live: a WebSocket stream
    deployments  the model deployments (visual, text, decoder), what /readyz asks them, and the
                 start-up lines a replica must show
    api_requests what each endpoint accepts: a pydantic model per endpoint, and reading a body;
                 api_responses: what each answers
    metrics      the application's Prometheus metrics
"""
