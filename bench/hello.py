"""The baseline of every page under load: a bare Flask app that answers "Hello", served by the
same gunicorn settings as UPSS (``gunicorn -w 2 bench.hello:app``)."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello"
