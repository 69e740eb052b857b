"""Running on a Ray cluster.

    ray_runtime       connecting to Ray (a cluster or a local instance) and Ray Data's settings
    submit            `vljepa submit`: any verb as a Ray job (submit_paths: relative paths refused)
    ray_stats         per-stage throughput of a finished Ray Data run
    exported_metrics  reading a node's metrics agent as Prometheus scrapes it
    net               loopback networking helpers
"""
