"""Evaluation over cached features (Ray-free).

    zero_shot      classification, retrieval and discriminative VQA against chance (paper §4.1-4.2)
    held_out_rows  the rows the in-training evaluation scores, read again each time
    text_triplets  the y-encoder's text-only hard-negative test (paper §4.6)
    captioning     CIDEr (the metric) of held-out captions decoded from Ŝ_Y
"""
