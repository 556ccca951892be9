"""Who may open a page, by role: the decorators every blueprint uses. (What a user may see
or do with one question is ``upss.access``'s rule.)"""

from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user, login_required


def role_required(flag: str):
    """A view decorator: signed in, and ``current_user.<flag>`` true; otherwise 403."""
    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not getattr(current_user, flag):
                abort(403)
            return view(*args, **kwargs)
        return wrapped
    return decorator


#: Signed in as a vetted, active-or-suspended answerer (``User.is_answerer``).
answerer_required = role_required("is_answerer")
#: Signed in as an organizer.
organizer_required = role_required("is_organizer")
