"""Per-stage throughput of a finished Ray Data run, for end-of-run summaries.

Reads Ray Data's own execution stats (a private API): if a Ray upgrade changes them, the summary
loses this table and nothing else.
"""

from __future__ import annotations

import logging


def stage_throughput(dataset) -> list[dict]:
    """[{stage, rows, seconds, rows_per_s, task_seconds}] in pipeline order."""
    try:
        stages = []
        for op in _operators_in_order(dataset._get_stats_summary()):
            if op.earliest_start_time is None or op.latest_end_time is None or op.output_num_rows is None:
                continue
            seconds = max(op.latest_end_time - op.earliest_start_time, 1e-9)
            rows = int(op.output_num_rows.sum)
            stages.append({
                "stage": op.operator_name, "rows": rows, "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds, 1),
                "task_seconds": round(op.wall_time.sum, 2) if op.wall_time else None,
            })
        return stages
    except Exception as exc:  # stats are a nicety; never fail a run over them
        logging.getLogger(__name__).debug("no Ray Data stage stats: %s", exc)
        return []


def _operators_in_order(summary) -> list:
    """Operators of this dataset and of the datasets it was built from, first stage first."""
    operators = []
    for parent in summary.parents:
        operators.extend(_operators_in_order(parent))
    return operators + list(summary.operators_stats)
