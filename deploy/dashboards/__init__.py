"""The Grafana dashboards, defined once in :mod:`deploy.dashboards.build`."""
