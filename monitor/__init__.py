"""The extraction monitor (issue 15, in progress): reads API request logs, scores accounts,
limits campaigns. So far: reading request logs (monitor.requests)."""

from monitor.requests import Request, RequestStats, parse_timestamp, read_requests

__all__ = ["Request", "RequestStats", "parse_timestamp", "read_requests"]
