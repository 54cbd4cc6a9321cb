"""Probing a suspect through its OpenAI-compatible API: choosing the prompts (select), asking
them reliably and resumably (client, output), and stopping once the evidence is decisive
(decide). ``probe_file`` is one whole run."""

from probing.client import ProbeConfig, ProbeStats, backoff_delay, parse_retry_after, run_probes
from probing.decide import ProbeScorer, SequentialDecider, sequential_decider, shuffled
from probing.errors import EndpointError, OutputFileError, OutputMismatchError, ProbeError
from probing.output import ProbeOutput, RequestParams, ResumeState
from probing.run import ProbeOutcome, UntilDecided, probe_file
from probing.select import SelectConfig, select_probes, write_probes

__all__ = [
    "EndpointError", "OutputFileError", "OutputMismatchError", "ProbeConfig", "ProbeError",
    "ProbeOutcome", "ProbeOutput", "ProbeScorer", "ProbeStats", "RequestParams", "ResumeState",
    "SelectConfig", "SequentialDecider", "UntilDecided", "backoff_delay", "parse_retry_after",
    "probe_file", "run_probes", "select_probes", "sequential_decider", "shuffled",
    "write_probes",
]
