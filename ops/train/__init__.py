"""Training's batches (Ray-free).

    rows     a training stage's rows selected from cached Arrow batches
    collate  rows -> padded S_V, tokenised targets and queries
"""
