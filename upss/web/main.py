"""Home page, and the browser's ``/favicon.ico``."""

from flask import Blueprint, redirect, render_template, url_for

bp = Blueprint("main", __name__)


@bp.get("/")
def home():
    """What UPSS is, and where to start."""
    return render_template("main/home.html")


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon."""
    return redirect(url_for("static", filename="favicon.svg"), 301)
