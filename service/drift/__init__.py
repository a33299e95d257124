"""Input drift: predicted rows counted in the serving model's training bins, scored by PSI.

statistics (in service/model) describes the training rows and bins them; batcher.py takes the
rows off the request's path; window.py keeps the recent counts of every worker; score.py
computes the population stability index; monitor.py joins them for the serving path and
GET /model/drift; exposition.py gives /metrics its gauges.
"""

from .exposition import DriftCollector
from .monitor import DriftMonitor, worst
from .report import DriftReport, FeatureDrift

__all__ = ["DriftCollector", "DriftMonitor", "DriftReport", "FeatureDrift", "worst"]
