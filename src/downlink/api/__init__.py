"""JSON API routers: records, nodes, introspection and metrics."""
