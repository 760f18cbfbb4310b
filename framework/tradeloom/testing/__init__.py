"""Helpers for plugin authors' tests (conformance suites, builders).

Modules here import pytest; they are meant to be used from test code only.
"""
