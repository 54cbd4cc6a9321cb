"""The extraction monitor (issue 15, in progress): scores API accounts for systematic extraction
and limits them as they go. requests: reading request logs; limiter: the GCRA and the
risk-adaptive policy; config, features, baseline, detector, scoring: the per-account test
against a benign baseline; groups: coordinated accounts tested as one; activity: volume and
rhythm (shown, not tested); scan: the offline scan of a whole log; report: its HTML page (a
second pass over the log); export: the flagged accounts' responses marked in the index;
online, account: the online monitor (one request, one decision); service, protocol, server: the
same over HTTP; state:
per-account state that survives a restart (snapshot + journal); errors: the typed errors."""

from monitor.baseline import Baseline, build_baseline, fit_baseline
from monitor.config import MonitorConfig
from monitor.detector import conversation_key
from monitor.errors import (BaselineError, CheckError, ExportError, LimiterError,
                            MonitorConfigError, MonitorError, MonitorReportError, ScanError,
                            ServeError, StateCorruptedError, StateEntryError, StateError,
                            StateLockedError, StateVersionError, StateWriteError)
from monitor.export import DEFAULT_LABEL, ExportResult, export_flagged, read_risk_file
from monitor.groups import Group, find_groups, link_accounts
from monitor.group_limits import GroupLimits
from monitor.limiter import (ALLOW, BLOCK, DECISIONS, THROTTLE, Gcra, GcraResult, LimitDecision,
                             LimitPolicy)
from monitor.online import Decision, Monitor, load_policy
from monitor.report import ReportSummary, check_report_path, write_report
from monitor.requests import (Request, RequestStats, parse_timestamp, read_requests,
                              requests_by_account)
from monitor.scan import ScanResult, ScanRow, scan_file, scan_log
from monitor.scoring import AccountScorer, Assessment
from monitor.server import MonitorServer, serve
from monitor.state import Recovery, StateStore

__all__ = [
    "AccountScorer", "Assessment", "Baseline", "Group", "MonitorConfig", "build_baseline",
    "conversation_key", "GroupLimits",
    "find_groups", "fit_baseline", "link_accounts",
    "ScanError", "ScanResult", "ScanRow", "scan_file", "scan_log",
    "MonitorReportError", "ReportSummary", "check_report_path", "write_report",
    "DEFAULT_LABEL", "ExportError", "ExportResult", "export_flagged", "read_risk_file",
    "ALLOW", "BLOCK", "BaselineError", "DECISIONS", "Gcra", "GcraResult", "LimitDecision",
    "LimitPolicy", "LimiterError", "MonitorConfigError", "MonitorError", "Recovery", "Request",
    "RequestStats", "StateCorruptedError", "StateEntryError", "StateError", "StateLockedError",
    "StateStore", "StateVersionError", "StateWriteError", "THROTTLE", "parse_timestamp",
    "read_requests", "requests_by_account",
    "CheckError", "Decision", "Monitor", "MonitorServer", "ServeError", "load_policy", "serve",
]
