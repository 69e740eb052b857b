"""Serving on Ray Serve.

    app          `vljepa serve` and the application builder (args: its arguments)
    ingress      the HTTP ingress (FastAPI): validation, auth, size limit; live: a WebSocket stream
    deployments  the model deployments (visual, text, decoder); ready: what /readyz asks them
    api_fields   request fields with their bounds (request_fields: parsing them); api_responses
    metrics      the application's Prometheus metrics; notice: start-up lines a replica must show
"""
