"""Evaluation verbs.

    evaluate  `vljepa evaluate`: zero-shot tasks and text triplets on a held-out cache
"""
