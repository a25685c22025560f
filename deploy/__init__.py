"""Deployment tooling shared by the charts, the dashboards and their checks (tests/deploy)."""
