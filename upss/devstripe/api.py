"""What the local API's routes share: Stripe's errors, ids, parameters checked like Stripe's,
list pages, and reading a request and writing its answer with localstripe's helpers.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import re
import secrets
import sys
import types
import typing
from urllib.parse import urlsplit

import typing_extensions
from aiohttp import web

#: How many API requests (the request log) and events (the event log) are kept.
_REQUEST_LOG_SIZE = 10_000
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _new_id(prefix: str, length: int = 24) -> str:
    """``acct_1PgafTB7WZ01zgkW`` and the like: a 1, then random letters and digits."""
    return prefix + "1" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length - 1))


def _stripe_error(status: int, type_: str, message: str, code: str | None = None,
                  headers: dict | None = None) -> web.Response:
    error = {"type": type_, "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status, headers=headers)


def _invalid(message: str, param: str | None = None, code: str | None = None,
             status: int = 400):
    """Stripe's ``invalid_request_error`` (localstripe's error middleware writes the JSON)."""
    from localstripe.errors import UserError

    contents = {}
    if code:
        contents["code"] = code
        contents["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        contents["param"] = param
    return UserError(status, message, contents)


def _missing(kind: str, id_: str, param: str, status: int = 400):
    return _invalid(f"No such {kind}: '{id_}'", param, "resource_missing", status)


# Parameters are checked against the pinned stripe library's params TypedDicts, the same source
# as the tests' contract plugin, so that an unknown parameter gets Stripe's 400.

def _params_type(name: str):
    return getattr(importlib.import_module("stripe.params"), name)


@functools.cache
def _param_fields(td) -> dict:
    """``{parameter: type}`` of a params TypedDict, without the request options it inherits."""
    from stripe._request_options import RequestOptions

    namespace = {**vars(typing), **vars(sys.modules[RequestOptions.__module__]),
                 **vars(sys.modules[td.__module__])}
    hints = {}
    for key, annotation in td.__annotations__.items():
        probe = type("Probe", (), {"__annotations__": {key: annotation},
                                   "__module__": td.__module__})
        try:
            hints.update(typing.get_type_hints(probe, globalns=namespace))
        except Exception:  # noqa: BLE001 - an unreadable annotation: anything below this key
            hints[key] = typing.Any
    for key in RequestOptions.__annotations__:
        hints.pop(key, None)
    return hints


def _alternatives(tp) -> list:
    origin = typing.get_origin(tp)
    if origin in (typing.NotRequired, typing.Required):
        return _alternatives(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [alt for arg in typing.get_args(tp) for alt in _alternatives(arg)]
    if tp is type(None):
        return []
    if isinstance(tp, str | typing.ForwardRef):
        return [typing.Any]
    return [tp]


def _is_mapping_type(tp) -> bool:
    from stripe._stripe_object import StripeObject

    if typing_extensions.is_typeddict(tp):  # a dict subclass, but with its own keys
        return False
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, dict | collections.abc.Mapping
                                                   | StripeObject)


def _unknown_param(value, tp, path: str) -> str | None:
    """The first parameter under ``value`` that type ``tp`` does not have, as Stripe names it."""
    return _unknown_in(value, _alternatives(tp), path)


def _unknown_in(value, alternatives: list, path: str) -> str | None:
    if not alternatives or typing.Any in alternatives:
        return None
    if isinstance(value, dict):
        if any(_is_mapping_type(alt) for alt in alternatives):
            return None  # metadata and the like: any key
        first = None
        for td in (alt for alt in alternatives if typing_extensions.is_typeddict(alt)):
            found = _unknown_field(value, td, path)
            if found is None:
                return None
            first = first or found
        return first or (f"{path}[{next(iter(value))}]" if value else None)
    if isinstance(value, list):
        items = [alt for a in alternatives
                 if (typing.get_origin(a) or a) in (list, collections.abc.Sequence)
                 for alt in _alternatives((typing.get_args(a) or (typing.Any,))[0])]
        for index, item in enumerate(value):
            found = _unknown_in(item, items or [typing.Any], f"{path}[{index}]")
            if found:
                return found
    return None


def _unknown_field(value: dict, td, path: str) -> str | None:
    fields = _param_fields(td)
    for key, item in value.items():
        where = f"{path}[{key}]" if path else str(key)
        if key not in fields:
            return where
        found = _unknown_param(item, fields[key], where)
        if found:
            return found
    return None


def check_params(params: dict, typed_dict: str) -> dict:
    """``params`` if the library's ``typed_dict`` has all of them, else Stripe's 400."""
    unknown = _unknown_field(params, _params_type(typed_dict), "")
    if unknown:
        raise _invalid(f"Received unknown parameter: {unknown}", unknown, "parameter_unknown")
    if params.get("expand"):
        raise _invalid("The local Stripe (upss.devstripe) does not expand Connect objects; "
                       "read the ids instead.", "expand")
    return params


def _int(value, param: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if not isinstance(value, int | str):
        raise _invalid(f"Invalid integer: {value}", param)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _invalid(f"Invalid integer: {value}", param) from None
    if isinstance(value, bool) or (isinstance(value, str) and not re.fullmatch(r"-?\d+", value)):
        raise _invalid(f"Invalid integer: {value}", param)
    if minimum is not None and number < minimum:
        raise _invalid(f"This value must be greater than or equal to {minimum}.", param)
    if maximum is not None and number > maximum:
        raise _invalid(f"This value must be less than or equal to {maximum}.", param)
    return number


def _object(value, param: str) -> dict:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"Invalid object: {param} takes an object (hash).", param)
    return value


def _bool(value, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"Invalid boolean: {value}", param)


def _str(value, param: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _invalid(f"Missing required param: {param}.", param, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {value!r}", param)
    return value


def _choice(value, param: str, choices: tuple[str, ...], *, required: bool = False):
    value = _str(value, param, required=required)
    if value is not None and value not in choices:
        raise _invalid(f"Invalid {param}: must be one of {', '.join(choices)}", param,
                       "parameter_invalid_string")
    return value


def _metadata(value, param: str = "metadata") -> dict:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid("Invalid metadata: must be an object of strings", param)
    return {k: v for k, v in value.items() if v != ""}


def _url(value, param: str) -> str | None:
    value = _str(value, param)
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise _invalid("Not a valid URL", param, "url_invalid")
    return value


def _state_in(store, key: str, new: collections.abc.Callable[[], dict]
              ) -> collections.abc.Callable[[], dict]:
    """A reader of this layer's own state, kept in localstripe's ``store`` under ``key`` (so it
    is saved with localstripe's state file) and made by ``new()`` the first time."""
    def data() -> dict:
        state = store.get(key)
        if state is None:
            state = new()
            dict.__setitem__(store, key, state)
        return state

    return data


def _stored(store: dict, kind: str, id_: str, param: str = "id", status: int = 404) -> dict:
    """The object ``id_`` kept in ``store``, or Stripe's ``resource_missing`` error."""
    found = store.get(id_)
    if found is None:
        raise _missing(kind, id_, param, status)
    return found


def _filtered_page(store: dict, url: str, params: dict, kind: str,
                   keys: tuple[str, ...] = ()) -> dict:
    """A Stripe list of ``store``'s objects, newest first, keeping those whose ``keys`` equal the
    parameters given for them (``?charge=ch_…``), then cut as :func:`_list_page` does."""
    items = list(reversed(store.values()))
    for key in keys:
        if params.get(key) is not None:
            wanted = _str(params[key], key)
            items = [o for o in items if o[key] == wanted]
    return _list_page(items, url, params, kind)


def _list_page(items: list[dict], url: str, params: dict, kind: str) -> dict:
    """A Stripe list: ``items`` newest first, cut by ``created``, ``limit``, ``starting_after``
    and ``ending_before``."""
    created = params.get("created")
    if created is not None:
        bounds = created if isinstance(created, dict) else {"eq": created}
        tests = {"eq": int.__eq__, "gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__,
                 "lte": int.__le__}
        for op, bound in bounds.items():
            if op not in tests:
                raise _invalid(f"Received unknown parameter: created[{op}]", f"created[{op}]",
                               "parameter_unknown")
            limit_value = _int(bound, f"created[{op}]" if op != "eq" else "created")
            items = [o for o in items if tests[op](o["created"], limit_value)]
    limit = _int(params.get("limit", 10), "limit", minimum=1, maximum=100)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None and before is not None:
        raise _invalid("You may only specify one of these parameters: ending_before, "
                       "starting_after.", "ending_before")
    ids = [o["id"] for o in items]
    if after is not None:
        if after not in ids:
            raise _missing(kind, after, "starting_after")
        rest = items[ids.index(after) + 1:]
        page, has_more = rest[:limit], len(rest) > limit
    elif before is not None:
        if before not in ids:
            raise _missing(kind, before, "ending_before")
        rest = items[:ids.index(before)]
        page, has_more = rest[-limit:], len(rest) > limit
    else:
        page, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


# Reading a request and writing the answer, as localstripe's own handlers do.

def _request_info(request: web.BaseRequest) -> dict:
    return {"id": request.get("upss_request_id"),
            "idempotency_key": request.headers.get("Idempotency-Key")}


async def _body(request: web.Request) -> dict:
    from localstripe import server

    data = await server.get_post_data(request)
    return data if isinstance(data, dict) else {}


def _query(request: web.Request) -> dict:
    from localstripe import server

    return server.unflatten_data(request.query)


def _json(obj: dict) -> web.Response:
    from localstripe.errors import json_response

    return json_response(obj)
