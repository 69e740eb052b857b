"""Running on a Ray cluster.

    ray_runtime       connecting to Ray (a cluster or a local instance), Ray Data's settings, and
                      the per-stage throughput of a finished Ray Data run
    submit            `vljepa submit`: any verb as a Ray job (relative paths refused)
    exported_metrics  reading a node's metrics agent as Prometheus scrapes it
    net               loopback networking helpers
"""
