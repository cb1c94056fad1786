"""Shared pytest configuration for the Python test suites."""
