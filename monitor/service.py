"""The online monitor's HTTP API as a pure function of a request (no sockets here: the server,
monitor.server, puts it on HTTP, and monitor.protocol frames requests), so every answer it gives
can be tested without a network.

``POST /v1/check`` takes a JSON object in one of two shapes:
- ``{"account": ..., "prompt": ..., "timestamp": ..., "prior_turns": ..., "conversation": ...}``
  (timestamp, prior_turns and conversation optional; ``conversation`` is the first user message
  of the conversation a follow-up continues);
- the OpenAI chat body, as a gateway's pre-call hook (LiteLLM's, for one) holds it:
  ``{"user": ..., "messages": [...], ...}``: the account is ``user`` (``account``, if given,
  wins), the prompt is the last user message's text, ``prior_turns`` the assistant messages
  before it and ``conversation`` the first user message (as the offline scan reads a chat log);
  every other field (model, temperature, ...) is ignored.
``timestamp`` is seconds since the epoch (numbers of 1e11 and more are milliseconds) or an ISO
8601 time (without an offset: UTC), as in request logs; absent or null means now.

It answers 200 with ``{decision, risk, retry_after, reasons, requests, flagged, group}`` whatever
the decision. A refusal is the caller's to enforce: a 429 from the monitor would be read as the
monitor itself being overloaded (Envoy's rate-limit service likewise answers OK / OVER_LIMIT in
its body, not with an HTTP error); ``retry_after`` is what the gateway puts in its own 429's
Retry-After header. A body the monitor cannot judge gets a 4xx JSON error
``{"error": {"message", "type", "code"}}`` naming the problem (and the field); state that cannot
be read or written gets a 503. ``GET /v1/health`` answers the monitor's counters.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from fingerprint.http_server import Reply, read_json_object
from fingerprint.records import first_user_message, last_user_message, prior_turns
from monitor.errors import CheckError, MonitorError
from monitor.online import Monitor
from monitor.requests import parse_timestamp

CHECK_ROUTE = "/v1/check"
HEALTH_ROUTE = "/v1/health"
ROUTES = {CHECK_ROUTE: "POST", HEALTH_ROUTE: "GET"}  # each route answers one method (and HEAD)


def error_reply(status: int, message: str, code: str,
                headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON error: ``type`` says whose fault it is (the request's, or the server's)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()
    return Reply(status, body, dict(headers or {}))


def json_reply(data: Any) -> Reply:
    return Reply(200, json.dumps(data, allow_nan=False).encode())


def parse_json_object(body: bytes) -> dict[str, Any] | Reply:
    """The body as a JSON object, or the 400 saying why it is not one."""
    request = read_json_object(body)
    if isinstance(request, str):
        return error_reply(400, request, "invalid_json")
    return request


def check_arguments(request: Mapping[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """(account, prompt, timestamp, prior_turns, conversation) from either body shape (the
    module docstring);
    a CheckError names what is missing or unusable (types are checked by the monitor)."""
    if "messages" in request:
        if "prompt" in request:
            raise CheckError("give prompt or messages, not both")
        messages = request["messages"]
        if not isinstance(messages, list):
            raise CheckError(f"messages must be a list of chat messages, got "
                             f"{type(messages).__name__}")
        prompt = last_user_message(messages)
        if prompt is None:
            raise CheckError("messages holds no user message with text content")
        turns = request.get("prior_turns", prior_turns(messages))
        conversation = request.get("conversation", first_user_message(messages))
    elif "prompt" in request:
        prompt, turns = request["prompt"], request.get("prior_turns")
        conversation = request.get("conversation")
    else:
        raise CheckError("prompt (or messages, in the chat shape) is missing")
    account = request.get("account", request.get("user"))
    if account is None:
        raise CheckError("account (or user, in the chat shape) is missing")
    return account, prompt, request_time(request.get("timestamp")), turns, conversation


def request_time(value: Any) -> float | None:
    """Seconds since the epoch of a request's timestamp (None: absent, meaning now)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise CheckError(f"timestamp must be seconds since the epoch or an ISO 8601 time, got "
                         f"{type(value).__name__}")
    moment = parse_timestamp(value if isinstance(value, str) else repr(value))
    if moment is None:
        raise CheckError(f"timestamp {str(value)[:60]!r} is neither seconds since the epoch nor "
                         f"an ISO 8601 time")
    return moment


class CheckService:
    """Answers the monitor's routes from ``monitor`` (thread-safe: the monitor holds a lock)."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        route = path.split("?", 1)[0].rstrip("/")
        allowed = ROUTES.get(route)
        if allowed is None:
            return error_reply(404, f"no route {path[:200]}; the monitor answers POST "
                               f"{CHECK_ROUTE} and GET {HEALTH_ROUTE}", "unknown_route")
        if method != allowed and (method, allowed) != ("HEAD", "GET"):
            return error_reply(405, f"{route} takes {allowed}, not {method[:20]}",
                               "method_not_allowed", {"Allow": allowed})
        if allowed == "GET":
            return json_reply(self.monitor.health())
        request = parse_json_object(body)
        if isinstance(request, Reply):
            return request
        try:
            decision = self.monitor.observe(*check_arguments(request))
        except CheckError as exc:
            return error_reply(400, str(exc), "invalid_field")
        except MonitorError as exc:  # state that cannot be read or written: not the client's
            return error_reply(503, f"the monitor cannot record this request: {exc}",
                               "state_unavailable")
        return json_reply(decision.to_dict())
