"""Loader for the corpus of real provider deliveries (tests/e2e/corpus/<provider>/<name>.json).

Each file is one HTTP delivery as the provider publishes it::

    {"source": "<where it was published>", "comment": "<optional: how a derived one differs>",
     "method": "POST" | "GET", "headers": {...}, "content_type": "...",
     "query": "<optional raw query string>", "body": <JSON value | string | null>}

How the body goes on the wire:

* a string is sent byte for byte (UTF-8): raw form bodies published as such,
  SNS's pretty-printed JSON sent as text/plain;
* for an ``application/x-www-form-urlencoded`` content type, an object is
  urlencoded in key order (spaces as ``+``, the way Twilio and Slack encode);
  a value that is itself an object or array is sent as compact JSON text (Slack's
  ``payload=`` field);
* any other JSON value is serialised compactly (``separators=(",", ":")``, non-ASCII kept).

Headers go out exactly as listed (plus Host and Content-Length, which the client
computes); no ``python-requests`` defaults are added.
"""

from __future__ import annotations

import copy
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import requests

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
HTTP_TIMEOUT = 10
# Set by the HTTP client itself; a published value would be wrong for our bytes.
_CLIENT_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}


@dataclass
class Delivery:
    provider: str
    name: str
    source: str
    method: str
    headers: dict[str, str]
    content_type: str | None
    query: str | None
    body: Any
    comment: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.name}"

    def copy(self) -> "Delivery":
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ wire
    def is_form(self) -> bool:
        return (self.content_type or "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"

    def raw_body(self) -> bytes | None:
        """The request body bytes (None for no body)."""
        if self.body is None:
            return None
        if isinstance(self.body, str):
            return self.body.encode()
        if self.is_form() and isinstance(self.body, dict):
            pairs = [(k, v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False))
                     for k, v in self.body.items()]
            return urllib.parse.urlencode(pairs).encode()
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()

    def wire_headers(self) -> dict[str, str]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _CLIENT_HEADERS}
        if self.content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = self.content_type
        return headers

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None

    # --------------------------------------------------------------- editing
    def form_fields(self) -> dict:
        """The body as an editable dict (JSON object bodies, dict form bodies, or
        a raw form string parsed in order)."""
        if isinstance(self.body, str) and self.is_form():
            self.body = dict(urllib.parse.parse_qsl(self.body, keep_blank_values=True))
        if isinstance(self.body, str):
            self.body = json.loads(self.body)
        return self.body

    def query_fields(self) -> dict:
        return dict(urllib.parse.parse_qsl(self.query or "", keep_blank_values=True))

    def set_query_fields(self, fields: dict) -> None:
        self.query = urllib.parse.urlencode(fields)


def load(provider: str, name: str) -> Delivery:
    path = os.path.join(CORPUS_DIR, provider, f"{name}.json")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    known = {"source", "comment", "method", "headers", "content_type", "query", "body"}
    return Delivery(provider=provider, name=name, source=d["source"], method=d.get("method", "POST"),
                    headers=dict(d.get("headers") or {}), content_type=d.get("content_type"),
                    query=d.get("query") or None, body=d.get("body"), comment=d.get("comment"),
                    extra={k: v for k, v in d.items() if k not in known})


def all_deliveries() -> list[Delivery]:
    out = []
    for provider in sorted(os.listdir(CORPUS_DIR)):
        pdir = os.path.join(CORPUS_DIR, provider)
        if not os.path.isdir(pdir):
            continue
        for fn in sorted(os.listdir(pdir)):
            if fn.endswith(".json"):
                out.append(load(provider, fn[:-5]))
    return out


def _session() -> requests.Session:
    s = requests.Session()
    s.headers.clear()  # only the delivery's own headers go out
    return s


def send(cluster, wf_id: str, delivery: Delivery, timeout: float = HTTP_TIMEOUT) -> requests.Response:
    """Sends the delivery to the workflow's URL over real HTTP (127.0.0.1)."""
    url = cluster.hook_url(wf_id)
    if delivery.query:
        url += "?" + delivery.query
    with _session() as s:
        req = requests.Request(delivery.method, url, headers=delivery.wire_headers(), data=delivery.raw_body())
        prepared = s.prepare_request(req)
        return s.send(prepared, timeout=timeout, allow_redirects=False)
