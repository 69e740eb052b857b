"""Exported models.

    export   `vljepa export`: a self-contained model directory from a run or a preset
    summary  `vljepa summary`: parameter counts per component, on the meta device
    source   where a model comes from: a directory or an MLflow URI, resolved on each node
"""
