"""Stripe contract check: every Stripe request and every test webhook must fit the current API.

Why: in tests the app talks to localstripe, a lenient fake that still accepts parameters real Stripe
has removed (``payment_method_types`` on ``POST /v1/payment_intents`` was removed in API version
2026-10-28.endive and no test noticed), and the tests hand-build webhook payloads that nothing
compared with what Stripe really sends. This plugin (registered by ``tests/conftest.py``) checks
both against sources that come with the project, never against a hand-written list:

* **Requests.** The installed ``stripe`` library is the contract for requests. Every service method
  of it (``stripe/_*_service.py``, sub-services and ``stripe/v2/...`` included) calls
  ``self._request("post", "/v1/payment_intents/{intent}".format(...), params=params, ...)`` and
  annotates ``params: "PaymentIntentUpdateParams"``. :func:`endpoint_map` finds the services by
  introspection (walking ``StripeClient``'s service tree from ``V1Services``, ``V2Services`` and
  ``OAuthService`` through each module's ``_subservices``) and reads the calls from their source
  with ``ast``, giving ``(http method, path template) -> params TypedDict``. :func:`check_request`
  then requires every parameter, recursively into nested dicts and lists of dicts, to be a field
  of that TypedDict (``typing.get_type_hints``). ``RequestOptions`` keys, which the TypedDicts
  inherit for the library's own typing, are not parameters (they belong in ``options=``).
* **Webhooks.** Stripe's example objects (``fixtures3.json`` from ``stripe/openapi``, see
  tests/data/stripe/README.md) and the library's resource classes (``stripe.PaymentIntent`` & co,
  which win where the two differ) are the contract for events: :func:`check_event_payload`
  requires every key of the event and of ``data.object`` (nested objects too) to exist there, and
  an id wherever Stripe sends an id reference (``latest_charge``, ``charge``, ...), never an
  expanded object. Events stamped with localstripe's own API version (2017-08-15) stand for what
  localstripe delivers and are checked for the envelope only; everything else must be current.

How it is applied, so that no test can sidestep it:

* ``_APIRequestor.request_raw`` and ``request_raw_async`` are wrapped for the whole session (from
  ``pytest_configure``). They are the one choke point: ``request``, ``request_async``,
  ``request_stream``, ``request_stream_async`` and ``StripeClient.raw_request`` all call them, with
  the params still a Python dict (the library encodes them for the wire only inside). So every
  request in the test process is seen, including those the app makes from a ``live_server``
  thread. The wrapper never raises into the library (the app would turn that into its own error
  types): it records the violation and lets the request go on.
* ``werkzeug.test.Client.run_wsgi_app`` is wrapped so that every POST a test client sends to a path
  ending in ``/stripe/webhook`` with a JSON object body is checked too. Webhooks localstripe sends
  over HTTP to a live server do not pass there and are not checked.
* Violations are recorded per test (thread-safe) and fail the test that made them: after the test
  call (the test FAILS), or in teardown for anything recorded later (an ERROR). Violations made
  while no test runs fail the session. The ``stripe_contract`` fixture shows the requests and
  events a test made and lets a test make bad ones on purpose with ``expect_violations()``.
"""

from __future__ import annotations

import ast
import collections.abc
import contextlib
import dataclasses
import functools
import importlib
import inspect
import io
import json
import os
import re
import sys
import threading
import types
import typing
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import stripe
import typing_extensions
import werkzeug.test
from stripe._api_requestor import _APIRequestor
from stripe._api_version import _ApiVersion
from stripe._request_options import RequestOptions
from stripe._stripe_object import StripeObject, UntypedStripeObject
from stripe._stripe_service import StripeService

API_VERSION = _ApiVersion.CURRENT

#: The API version localstripe stamps on its events (``localstripe/resources.py``, ``Event``);
#: an event carrying it stands for a localstripe delivery, whose 2017 object shapes are not
#: compared with the current ones.
LOCALSTRIPE_API_VERSION = "2017-08-15"

#: Where Stripe's example objects are looked for, first found wins.
FIXTURES_CANDIDATES = (
    os.environ.get("UPSS_STRIPE_FIXTURES", ""),
    str(Path(__file__).parent / "data" / "stripe" / "fixtures3.json"),
)

#: Where the service tree of ``StripeClient`` starts (``client.v1``, ``client.v2``,
#: ``client.oauth``); everything else is reached through the modules' ``_subservices``.
SERVICE_ROOTS = (
    ("stripe._v1_services", "V1Services"),
    ("stripe._v2_services", "V2Services"),
    ("stripe._oauth_service", "OAuthService"),
)

#: The calls through which a service sends a request: ``self.<name>(method, url, params=...)``.
_SERVICE_CALLS = {"_request", "_request_async", "_request_stream", "_request_stream_async"}
#: ... or ``self._requestor.<name>(...)`` (``OAuthService``).
_REQUESTOR_CALLS = {"request", "request_async", "request_stream", "request_stream_async"}

#: Keys that are id references in Stripe objects, used only where neither the library's resource
#: class nor the fixture tells (the library's ``ExpandableField`` annotations come first).
ID_REFERENCE_KEYS = frozenset({
    "account", "application", "application_fee", "balance_transaction", "charge", "customer",
    "destination", "destination_payment", "failure_balance_transaction", "invoice",
    "latest_charge", "on_behalf_of", "payment_intent", "payment_method", "review", "source",
    "source_transaction", "source_transfer", "transfer", "transfer_reversal",
})
#: An id as Stripe writes them: ``txn_1PgaxNB7WZ01zgkWEV3TLf40``, ``card_...``, ``acct_...``.
_ID_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*_[A-Za-z0-9]*[A-Z0-9][A-Za-z0-9]*$")

_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


# ---------------------------------------------------------------------------------------------
# The endpoint map: (http method, path template) -> params TypedDict, read from the library.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Endpoint:
    """One (method, path template) of the API and the params TypedDict(s) its service methods take.

    ``params_refs`` holds ``(module, dotted name)`` pairs, resolved on first use; ``None`` in it
    means a service method that takes no ``params`` at all.
    """

    method: str
    template: str
    params_refs: list = dataclasses.field(default_factory=list)
    #: ``module.Class.method`` of every service method that calls it.
    sources: list = dataclasses.field(default_factory=list)

    @functools.cached_property
    def params_types(self) -> tuple:
        """The TypedDict classes (``None`` for "takes no params"), in service order."""
        return tuple(None if ref is None else _resolve(*ref) for ref in self.params_refs)

    @property
    def params_type(self):
        """The TypedDict when there is exactly one (the usual case)."""
        types = set(self.params_types)
        if len(types) != 1:
            raise ValueError(f"{self.method} {self.template} takes {self.params_types}")
        return next(iter(types))

    @functools.cached_property
    def regex(self) -> re.Pattern:
        """The template as a regex: each ``{x}`` is exactly one path segment."""
        return re.compile("^" + "".join(
            "[^/]+" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]*\})", self.template) if part) + "$")

    @functools.cached_property
    def specificity(self) -> tuple:
        """Literal segments beat placeholders, the leftmost difference deciding."""
        return tuple(0 if "{" in seg else 1 for seg in self.template.split("/"))


@dataclasses.dataclass
class EndpointMap:
    endpoints: dict  # (method, template) -> Endpoint
    #: Service calls whose method or url the parser could not read (should stay empty).
    unparsed: list
    #: Every service class found, ``module.Class``.
    services: list

    def __getitem__(self, key) -> Endpoint:
        return self.endpoints[key]

    def __contains__(self, key) -> bool:
        return key in self.endpoints

    def __len__(self) -> int:
        return len(self.endpoints)

    @functools.cached_property
    def _by_method(self) -> dict:
        by_method: dict = {}
        for endpoint in self.endpoints.values():
            by_method.setdefault(endpoint.method, []).append(endpoint)
        return by_method

    def match(self, method: str, path: str) -> list[Endpoint]:
        """The most specific endpoints for a concrete path (several only if equally specific)."""
        found = [e for e in self._by_method.get(method.lower(), ()) if e.regex.match(path)]
        if not found:
            return []
        best = max(e.specificity for e in found)
        return [e for e in found if e.specificity == best]


def _discover_services() -> list[type]:
    """Every service class reachable from ``StripeClient`` (``v1``, ``v2``, ``oauth``)."""
    seen: dict = {}
    todo = list(SERVICE_ROOTS)
    while todo:
        module_name, class_name = todo.pop()
        if (module_name, class_name) in seen:
            continue
        module = importlib.import_module(module_name)
        seen[(module_name, class_name)] = getattr(module, class_name)
        todo.extend(tuple(v) for v in getattr(module, "_subservices", {}).values())
    return [cls for cls in seen.values() if issubclass(cls, StripeService)]


def _annotation_name(node) -> str | None:
    """``"PaymentIntentCreateParams"`` from ``"X"``, ``Optional["X"]``, ``X`` or ``"OAuth.X"``."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.strip()
    if isinstance(node, ast.Subscript):  # Optional["X"]
        return _annotation_name(node.slice)
    if isinstance(node, (ast.Name, ast.Attribute)):
        return ast.unparse(node)
    return None


def _url_template(node) -> str | None:
    """``"/v1/x"`` or ``"/v1/x/{id}".format(id=...)`` -> the template; anything else -> None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format" and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)):
        return node.func.value.value
    return None


def _is_request_call(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    target = ast.unparse(func.value)
    return ((target == "self" and func.attr in _SERVICE_CALLS)
            or (target == "self._requestor" and func.attr in _REQUESTOR_CALLS))


def _call_arg(call: ast.Call, index: int, name: str):
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _read_module(module_name: str, classes: set, endpoints: dict, unparsed: list) -> None:
    module = sys.modules[module_name]
    tree = ast.parse(Path(inspect.getsourcefile(module)).read_text(encoding="utf-8"))
    # Names the annotations use come from (mostly TYPE_CHECKING-only) imports of the module.
    imports = {alias.asname or alias.name: node.module
               for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
               for alias in node.names}
    for cls in tree.body:
        if not (isinstance(cls, ast.ClassDef) and cls.name in classes):
            continue
        for fn in cls.body:
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
            param_arg = next((a for a in args if a.arg == "params"), None)
            where = f"{module_name}.{cls.name}.{fn.name}"
            for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
                if not _is_request_call(call):
                    continue
                method_node = _call_arg(call, 0, "method")
                template = _url_template(_call_arg(call, 1, "url"))
                if not (isinstance(method_node, ast.Constant) and template):
                    unparsed.append(f"{where}: {ast.unparse(call)[:120]}")
                    continue
                method = str(method_node.value).lower()
                ref = None
                if param_arg is not None:
                    name = _annotation_name(param_arg.annotation)
                    head = (name or "").split(".")[0]
                    # Unresolvable annotations (none today) check nothing: "?" means "any".
                    ref = (imports[head], name) if head in imports else ("?", name or "?")
                endpoint = endpoints.setdefault((method, template), Endpoint(method, template))
                if ref not in endpoint.params_refs:
                    endpoint.params_refs.append(ref)
                endpoint.sources.append(where)


_MAP_LOCK = threading.Lock()
_MAP: EndpointMap | None = None


def endpoint_map() -> EndpointMap:
    """The (method, path template) -> params TypedDict map of the installed library (built once)."""
    global _MAP
    with _MAP_LOCK:
        if _MAP is None:
            services = _discover_services()
            by_module: dict = {}
            for cls in services:
                by_module.setdefault(cls.__module__, set()).add(cls.__name__)
            endpoints: dict = {}
            unparsed: list = []
            for module_name, classes in sorted(by_module.items()):
                _read_module(module_name, classes, endpoints, unparsed)
            _MAP = EndpointMap(endpoints, unparsed,
                               sorted(f"{c.__module__}.{c.__name__}" for c in services))
        return _MAP


def _resolve(module_name: str, dotted: str):
    """The object ``dotted`` (``"X"`` or ``"OAuth.X"``) of ``module_name``; ``typing.Any`` if
    the annotation could not be traced to an import."""
    if module_name == "?":
        return typing.Any
    obj = importlib.import_module(module_name)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------
# Checking request params against a TypedDict.
# ---------------------------------------------------------------------------------------------

_WRAPPERS = {typing.NotRequired, typing.Required, typing.Annotated, typing.ClassVar,
             typing_extensions.NotRequired, typing_extensions.Required,
             typing_extensions.ReadOnly, typing_extensions.Annotated}
_UNIONS = {typing.Union, types.UnionType}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}
_SEQUENCES = {list, tuple, collections.abc.Sequence, collections.abc.MutableSequence}


def _alternatives_raw(tp) -> list:
    """``tp`` as the flat list of types it allows: NotRequired/Required/Annotated/Optional/Union
    unwrapped, ``None`` dropped; forward references kept (they name resource classes)."""
    origin = typing.get_origin(tp)
    if origin in _WRAPPERS:
        return _alternatives_raw(typing.get_args(tp)[0])
    if origin in _UNIONS:
        return [alt for arg in typing.get_args(tp) for alt in _alternatives_raw(arg)]
    if tp is type(None):
        return []
    return [tp]


def _alternatives(tp) -> list:
    """Like :func:`_alternatives_raw`, with unresolved forward references turned into ``Any``."""
    return [typing.Any if isinstance(alt, (typing.ForwardRef, str)) else alt
            for alt in _alternatives_raw(tp)]


def _inherits_request_options(td) -> bool:
    return any(base is RequestOptions or _inherits_request_options(base)
               for base in getattr(td, "__orig_bases__", ()))


@functools.cache
def typed_dict_fields(td) -> dict:
    """``{field: type}`` of a params TypedDict, without the ``RequestOptions`` keys it inherits.

    ``get_type_hints`` needs the names RequestOptions' own annotations use (``Mapping``,
    ``StripeContext``), which the params modules do not import; the module's names win.
    """
    from stripe._stripe_context import StripeContext

    namespace = {**vars(typing), **vars(sys.modules[RequestOptions.__module__]),
                 "StripeContext": StripeContext, **vars(sys.modules[td.__module__])}
    try:
        hints = typing.get_type_hints(td, globalns=namespace, include_extras=True)
    except Exception:  # noqa: BLE001 - one bad annotation must not hide the others
        hints = {}
        for key, annotation in td.__annotations__.items():
            probe = type("Probe", (), {"__annotations__": {key: annotation},
                                       "__module__": td.__module__})
            try:
                hints.update(typing.get_type_hints(probe, globalns=namespace,
                                                   include_extras=True))
            except Exception:  # noqa: BLE001 - unknown type: anything goes below this key
                hints[key] = typing.Any
    if _inherits_request_options(td):
        for key in _REQUEST_OPTION_KEYS:
            hints.pop(key, None)
    return hints


def _is_mapping_type(tp) -> bool:
    origin = typing.get_origin(tp) or tp
    return origin in _MAPPINGS or (isinstance(origin, type) and issubclass(origin, StripeObject))


def _check_fields(value: collections.abc.Mapping, td, path: str, problems: list[str]) -> None:
    fields = typed_dict_fields(td)
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key in fields:
            _check_value(item, fields[key], where, problems)
        elif not path and key in _REQUEST_OPTION_KEYS and _inherits_request_options(td):
            problems.append(f"{where}: a request option (RequestOptions), not a parameter of "
                            f"{td.__name__}; pass it in options=")
        else:
            problems.append(f"{where}: not a parameter of {td.__name__}")


def _check_value(value, tp, path: str, problems: list[str]) -> None:
    """Problems of ``value`` against type ``tp``: unknown keys of objects, and objects or lists
    where the type takes none. Scalars are not type-checked."""
    _check_alternatives(value, _alternatives(tp), path, problems)


def _check_alternatives(value, alternatives: list, path: str, problems: list[str]) -> None:
    if not alternatives or typing.Any in alternatives:
        return
    if isinstance(value, collections.abc.Mapping):
        mappings = [a for a in alternatives if _is_mapping_type(a)]
        if mappings:  # metadata-like: any key; the values still checked against the value type
            args = typing.get_args(mappings[0])
            value_type = args[-1] if args else typing.Any
            for key, item in value.items():
                _check_value(item, value_type, f"{path}.{key}", problems)
            return
        candidates = [a for a in alternatives if typing_extensions.is_typeddict(a)]
        if not candidates:
            problems.append(f"{path}: an object where the API takes {_describe(alternatives)}")
            return
        attempts = []
        for td in candidates:
            found: list[str] = []
            _check_fields(value, td, path, found)
            if not found:
                return
            attempts.append(found)
        problems.extend(min(attempts, key=len))
    elif isinstance(value, (list, tuple)):
        lists = [a for a in alternatives if (typing.get_origin(a) or a) in _SEQUENCES]
        if not lists:
            problems.append(f"{path}: a list where the API takes {_describe(alternatives)}")
            return
        item_alternatives = [alt for a in lists
                             for arg in (typing.get_args(a)[:1] or [typing.Any])
                             for alt in _alternatives(arg)]
        for index, item in enumerate(value):
            _check_alternatives(item, item_alternatives, f"{path}[{index}]", problems)


def _describe(alternatives: list) -> str:
    names = []
    for alt in alternatives:
        names.append(getattr(alt, "__name__", None) or repr(alt).replace("typing.", ""))
    return " | ".join(names) or "nothing"


def check_request(method: str, path: str, params) -> list[str]:
    """Problems of one Stripe request (empty when it fits the installed library's contract).

    ``path`` is the request path (a query string is ignored); ``params`` the params dict as the
    library gets it (the query params of a GET, the body of a POST). Each problem names the
    request and the parameter path, e.g. ``POST /v1/payment_intents: payment_method_types: not a
    parameter of PaymentIntentCreateParams``.
    """
    method = method.lower()
    path = urlsplit(path).path
    label = f"{method.upper()} {path}"
    endpoints = endpoint_map().match(method, path)
    if not endpoints:
        return [f"{label}: no service method of stripe {stripe.VERSION} (API {API_VERSION}) "
                f"calls this endpoint"]
    if not params:
        return []
    if not isinstance(params, collections.abc.Mapping):
        return [f"{label}: params are a {type(params).__name__}, not a dict"]
    attempts = []
    for td in (td for endpoint in endpoints for td in endpoint.params_types):
        if td is typing.Any:
            return []
        found: list[str] = []
        if td is None:
            found = [f"{key}: {endpoints[0].template} takes no parameters" for key in params]
        else:
            _check_fields(params, td, "", found)
        if not found:
            return []
        attempts.append(found)
    return [f"{label}: {problem}" for problem in min(attempts, key=len)]


# ---------------------------------------------------------------------------------------------
# Checking webhook payloads against Stripe's example objects and the library's resources.
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def stripe_fixtures() -> dict:
    """``resources`` of Stripe's ``fixtures3.json``, keyed by object type (``payment_intent``)."""
    for candidate in FIXTURES_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return json.loads(Path(candidate).read_text(encoding="utf-8"))["resources"]
    raise FileNotFoundError(f"Stripe's fixtures3.json is in none of {FIXTURES_CANDIDATES}")


@functools.cache
def resource_class(object_type: str):
    """The library's class for an object type (``"charge"`` -> ``stripe.Charge``), or None."""
    from stripe._object_classes import get_object_class

    cls = get_object_class("V1", object_type)
    return None if cls is StripeObject else cls


@functools.cache
def _resource_fields(cls) -> dict:
    """The fields a library class declares itself (its ``__annotations__``), ClassVars left out."""
    own = cls.__dict__.get("__annotations__", {})
    return {key: tp for key, tp in own.items()
            if not key.startswith("_") and typing.get_origin(tp) is not typing.ClassVar}


def _kind(tp):
    """How the library types a response field.

    ``("ref",)`` an expandable id reference, ``("object", cls)``, ``("free",)`` a map of any keys,
    ``("list", item type)``, ``("list_object",)``, ``("poly",)`` one of several embedded objects,
    ``("scalar",)``, or ``("unknown",)`` (the library does not type it).
    """
    if tp is None:
        return ("unknown",)
    alternatives = _alternatives_raw(tp)
    if not alternatives:
        return ("unknown",)
    has_str = str in alternatives
    objects = [a for a in alternatives if isinstance(a, (typing.ForwardRef, str))
               or (isinstance(typing.get_origin(a) or a, type)
                   and issubclass(typing.get_origin(a) or a, StripeObject))]
    if has_str and objects:
        return ("ref",)
    if len(objects) == 1:
        origin = typing.get_origin(objects[0]) or objects[0]
        if isinstance(origin, type) and issubclass(origin, UntypedStripeObject):
            return ("free",)
        if isinstance(origin, type) and issubclass(origin, stripe.ListObject):
            return ("list_object",)
        if isinstance(origin, type):
            return ("object", origin)
        return ("poly",)
    if len(objects) > 1:
        return ("poly",)
    lists = [a for a in alternatives if typing.get_origin(a) in (list, collections.abc.Sequence)]
    if lists:
        return ("list", (typing.get_args(lists[0]) or (typing.Any,))[0])
    if any(_is_mapping_type(a) for a in alternatives) or typing.Any in alternatives:
        return ("free",)
    return ("scalar",)


def _looks_like_id(value) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def _check_shape(value, example, tp, key: str, path: str, problems: list[str]) -> None:
    """Problems of one payload value against the example value and the library's type for it."""
    kind = _kind(tp)
    if kind[0] == "ref" and isinstance(example, dict):
        # Stripe's own example shows this reference expanded (fixtures3 does so for a few, e.g.
        # ``transfer_data.destination``): check it as the object it is rather than refuse it.
        kind = ("poly",)
    if isinstance(value, dict):
        if kind[0] == "ref" or (kind[0] == "unknown" and (
                _looks_like_id(example) or (example is None and key in ID_REFERENCE_KEYS))):
            problems.append(f"{path}: an expanded object where Stripe sends an id")
        elif kind[0] == "scalar" or (kind[0] == "unknown" and example is not None
                                     and not isinstance(example, dict)):
            problems.append(f"{path}: an object where Stripe sends a value")
        elif kind[0] == "object":
            _check_keys(value, example if isinstance(example, dict) else None,
                        _resource_fields(kind[1]), path, problems)
        elif kind[0] == "list_object":
            _check_keys(value, example if isinstance(example, dict) else None,
                        {"object": str, "data": list, "has_more": bool, "url": str,
                         "total_count": int}, path, problems, recurse=False)
            items = example.get("data") if isinstance(example, dict) else None
            item_example = items[0] if items and isinstance(items[0], dict) else None
            for index, item in enumerate(value.get("data") or []):
                if isinstance(item, dict):
                    _check_object(item, f"{path}.data[{index}]", problems, item_example)
        elif kind[0] in ("poly", "unknown"):
            if isinstance(value.get("object"), str) and value["object"] in stripe_fixtures():
                _check_object(value, path, problems,
                              example if isinstance(example, dict) else None)
            elif isinstance(example, dict) and example:
                _check_keys(value, example, {}, path, problems)
        # "free" (metadata and the like): any keys
    elif isinstance(value, list):
        item_tp = kind[1] if kind[0] == "list" else None
        item_example = example[0] if isinstance(example, list) and example else None
        for index, item in enumerate(value):
            _check_shape(item, item_example, item_tp, key, f"{path}[{index}]", problems)


def _check_keys(value: dict, example: dict | None, fields: dict, path: str,
                problems: list[str], recurse: bool = True) -> None:
    """Every key must be in the example object or the library's class; then each value."""
    if example is None and not fields:
        return
    known = set(example or ()) | set(fields)
    for key, item in value.items():
        where = f"{path}.{key}"
        if key not in known:
            problems.append(f"{where}: not a field of this object in API {API_VERSION}")
        elif recurse:
            _check_shape(item, (example or {}).get(key), fields.get(key), key, where, problems)


def _check_object(obj: dict, path: str, problems: list[str], example: dict | None = None) -> None:
    """A whole API object, found by its ``object`` type in the fixtures (``example``, the nested
    example where the object was found in a bigger one, adds to and overrides the fixture)."""
    object_type = obj.get("object")
    fixtures = stripe_fixtures()
    if object_type not in fixtures and example is None:
        problems.append(f"{path}.object: {object_type!r} has no example object in fixtures3.json")
        return
    cls = resource_class(object_type) if isinstance(object_type, str) else None
    _check_keys(obj, {**fixtures.get(object_type, {}), **(example or {})},
                _resource_fields(cls) if cls else {}, path, problems)


def check_event_payload(event) -> list[str]:
    """Problems of a webhook event payload (empty when it has Stripe's current shapes)."""
    if not isinstance(event, dict):
        return [f"event: a {type(event).__name__}, not a JSON object"]
    problems: list[str] = []
    if event.get("object") != "event":
        problems.append(f"event.object: {event.get('object')!r}, not 'event'")
    envelope = {key: value for key, value in event.items() if key != "data"}
    _check_object({**envelope, "object": "event"}, "event", problems)
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        problems.append("event.data.object: missing or not an object")
        return problems
    event_data = stripe.Event.Data.__annotations__
    for key in data:
        if key not in set(stripe_fixtures()["event"]["data"]) | set(event_data):
            problems.append(f"event.data.{key}: not a field of an event's data")
    obj = data["object"]
    if obj.get("object") not in stripe_fixtures():
        problems.append(f"event.data.object.object: {obj.get('object')!r} has no example object "
                        f"in fixtures3.json")
    elif event.get("api_version") != LOCALSTRIPE_API_VERSION:
        _check_object(obj, "event.data.object", problems)
    return problems


# ---------------------------------------------------------------------------------------------
# Recording, per test and thread-safe.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckedRequest:
    method: str
    path: str
    #: Top-level parameter names sent.
    params: tuple
    problems: tuple


@dataclasses.dataclass(frozen=True)
class CheckedEvent:
    id: str
    type: str
    object_type: str
    api_version: str | None
    problems: tuple


class _Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.test: str | None = None
        self.requests: list[CheckedRequest] = []
        self.events: list[CheckedEvent] = []
        self.violations: list[str] = []
        #: Violations while no test was running (e.g. a server thread after its test ended).
        self.outside: list[str] = []

    def begin(self, test: str) -> None:
        with self.lock:
            self.test, self.requests, self.events, self.violations = test, [], [], []

    def end(self) -> list[str]:
        with self.lock:
            self.test = None
            return self._take()

    def take(self) -> list[str]:
        with self.lock:
            return self._take()

    def _take(self) -> list[str]:
        taken, self.violations = self.violations, []
        return taken

    def add(self, record, problems: list[str]) -> None:
        with self.lock:
            (self.requests if isinstance(record, CheckedRequest) else self.events).append(record)
            if self.test is None:
                self.outside.extend(problems)
            else:
                self.violations.extend(problems)


RECORDER = _Recorder()


def _observe_request(method, url, params) -> None:
    try:
        problems = check_request(str(method), str(url), params)
        names = tuple(params) if isinstance(params, collections.abc.Mapping) else ()
    except Exception as exc:  # noqa: BLE001 - a checker bug must show, not break the request
        problems, names = [f"{method} {url}: the contract checker failed: {exc!r}"], ()
    RECORDER.add(CheckedRequest(str(method).lower(), urlsplit(str(url)).path, names,
                                tuple(problems)), problems)


def _observe_webhook(body: bytes) -> None:
    try:
        event = json.loads(body)
    except ValueError:
        return  # not JSON: a test of malformed bodies, not a payload shape
    if not isinstance(event, dict):
        return
    try:
        problems = check_event_payload(event)
    except Exception as exc:  # noqa: BLE001 - a checker bug must show
        problems = [f"the webhook checker failed: {exc!r}"]
    label = f"webhook {event.get('type')} ({event.get('id')})"
    problems = [f"{label}: {problem}" for problem in problems]
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    object_type = str(obj.get("object")) if isinstance(obj, dict) else ""
    RECORDER.add(CheckedEvent(str(event.get("id")), str(event.get("type")), object_type,
                              event.get("api_version"), tuple(problems)), problems)


# ---------------------------------------------------------------------------------------------
# The hooks into the stripe library and werkzeug's test client.
# ---------------------------------------------------------------------------------------------

_ORIGINALS: dict = {}
_HOOKED = "__stripe_contract_hook__"


def _wrap_requestor(original):
    signature = inspect.signature(original)
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def request_raw_async(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs).arguments
            _observe_request(bound.get("method"), bound.get("url"), bound.get("params"))
            return await original(self, *args, **kwargs)

        wrapper = request_raw_async
    else:
        @functools.wraps(original)
        def request_raw(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs).arguments
            _observe_request(bound.get("method"), bound.get("url"), bound.get("params"))
            return original(self, *args, **kwargs)

        wrapper = request_raw
    setattr(wrapper, _HOOKED, True)
    return wrapper


def _wrap_run_wsgi_app(original):
    @functools.wraps(original)
    def run_wsgi_app(self, environ, *args, **kwargs):
        if (environ.get("REQUEST_METHOD") == "POST"
                and environ.get("PATH_INFO", "").endswith("/stripe/webhook")):
            _observe_webhook(_peek_body(environ))
        return original(self, environ, *args, **kwargs)

    setattr(run_wsgi_app, _HOOKED, True)
    return run_wsgi_app


def _peek_body(environ) -> bytes:
    """The request body, leaving ``wsgi.input`` readable from the start for the app."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if stream.seekable():
        position = stream.tell()
        body = stream.read(length) if length >= 0 else stream.read()
        stream.seek(position)
        return body
    body = stream.read(length) if length >= 0 else stream.read()
    environ["wsgi.input"] = io.BytesIO(body)
    return body


_TARGETS = (
    (_APIRequestor, "request_raw", _wrap_requestor),
    (_APIRequestor, "request_raw_async", _wrap_requestor),
    (werkzeug.test.Client, "run_wsgi_app", _wrap_run_wsgi_app),
)


def install() -> None:
    """Wrap the library's and werkzeug's choke points (idempotent)."""
    for owner, name, wrap in _TARGETS:
        current = getattr(owner, name, None)
        if current is None or getattr(current, _HOOKED, False):
            continue
        _ORIGINALS[(owner, name)] = current
        setattr(owner, name, wrap(current))


def uninstall() -> None:
    for (owner, name), original in _ORIGINALS.items():
        setattr(owner, name, original)
    _ORIGINALS.clear()


def is_installed() -> bool:
    """Whether every choke point is wrapped right now."""
    return all(getattr(getattr(owner, name), _HOOKED, False) for owner, name, _ in _TARGETS)


# ---------------------------------------------------------------------------------------------
# pytest integration.
# ---------------------------------------------------------------------------------------------


def _failure(problems: list[str]) -> str:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return (f"Stripe contract violated (stripe {stripe.VERSION}, API {API_VERSION}); "
            f"see tests/stripe_contract.py:\n{lines}")


def pytest_configure(config) -> None:
    install()


def pytest_unconfigure(config) -> None:
    uninstall()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    RECORDER.begin(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield  # a test that already failed keeps its violations for the teardown report
    problems = RECORDER.take()
    if problems:
        pytest.fail(_failure(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        result = yield
    except BaseException as exc:
        problems = RECORDER.end()
        if problems:
            raise pytest.fail.Exception(_failure(problems), pytrace=False) from exc
        raise
    problems = RECORDER.end()
    if problems:
        pytest.fail(_failure(problems), pytrace=False)
    return result


def pytest_sessionfinish(session, exitstatus) -> None:
    if RECORDER.outside and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if RECORDER.outside:
        terminalreporter.section("Stripe contract violations outside any test", red=True)
        terminalreporter.line(_failure(RECORDER.outside))


class StripeContract:
    """What the ``stripe_contract`` fixture gives a test."""

    check_request = staticmethod(check_request)
    check_event_payload = staticmethod(check_event_payload)

    @property
    def requests(self) -> list[CheckedRequest]:
        """Every Stripe request checked during this test so far."""
        with RECORDER.lock:
            return list(RECORDER.requests)

    @property
    def events(self) -> list[CheckedEvent]:
        """Every webhook payload checked during this test so far."""
        with RECORDER.lock:
            return list(RECORDER.events)

    @contextlib.contextmanager
    def expect_violations(self):
        """Collect (and so excuse) the violations made inside the block, for the test to assert.

        ``with stripe_contract.expect_violations() as caught: ...`` then ``assert caught``.
        """
        caught: list[str] = []
        with RECORDER.lock:
            start = len(RECORDER.violations)
        try:
            yield caught
        finally:
            with RECORDER.lock:
                caught.extend(RECORDER.violations[start:])
                del RECORDER.violations[start:]


@pytest.fixture
def stripe_contract() -> StripeContract:
    """The Stripe contract recorder of this test (see the module docstring)."""
    return StripeContract()
