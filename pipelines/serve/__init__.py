"""Serving on Ray Serve.

    app          `vljepa serve` and the application builder (args: its arguments)
    ingress      the HTTP ingress (FastAPI): validation, auth, size limit; live: a WebSocket stream
    deployments  the model deployments (visual, text, decoder), what /readyz asks them, and the
                 start-up lines a replica must show
    api_fields   request fields with their bounds (request_fields: parsing them); api_responses
    metrics      the application's Prometheus metrics
"""
