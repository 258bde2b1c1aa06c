"""`bufmon export`: the Monitor's sockets and flags as Prometheus metrics."""
