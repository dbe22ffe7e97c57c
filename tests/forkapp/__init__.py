"""Helpers for tests/system/test_fork.py (a WSGI app served by a real gunicorn)."""
