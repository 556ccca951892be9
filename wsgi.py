"""The WSGI application for gunicorn and ``flask --app wsgi``."""

from upss import create_app

app = create_app()
