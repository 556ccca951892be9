"""Home page."""

from flask import Blueprint, render_template

bp = Blueprint("main", __name__)


@bp.get("/")
def home():
    """What UPSS is, and where to start."""
    return render_template("main/home.html")
