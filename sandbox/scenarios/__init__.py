"""Reproducible lifecycle scenarios: a YAML format, a step library, a runner, and reports."""
