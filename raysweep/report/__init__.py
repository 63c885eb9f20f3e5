"""The report: from the results table to which recipe to ship and how far the proxies can be trusted.

``table`` reads the input, ``summarize`` computes the typed ``Report`` (``records``) with the chosen proxy lr
(``lr_choice``), compute (``compute``) and figure data (``curves``); ``render`` prints it in a terminal, ``figures``
draws it, ``html`` writes one self-contained page.
"""

from raysweep.report.records import Report
from raysweep.report.summarize import report_run, summarize
from raysweep.report.table import load_results

__all__ = ["Report", "load_results", "report_run", "summarize"]
