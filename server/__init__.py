"""Settee's HTTP server: CouchDB's API over the store (werkzeug, run by gunicorn)."""
