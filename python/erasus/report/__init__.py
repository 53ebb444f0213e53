"""Reports: matplotlib PNGs and one self-contained HTML page (PNGs embedded as data URIs).

``write_report(rows, out_dir, ...)`` takes the result rows of an experiment (one dict per method, see
:mod:`erasus.experiments`) and writes ``report.html`` plus the PNGs it shows.
"""

from .html import write_report
from .plots import plot_coreset_curve, plot_metric_bars, plot_pareto, plot_selection

__all__ = ["write_report", "plot_metric_bars", "plot_pareto", "plot_coreset_curve", "plot_selection"]
