"""Training's batches (Ray-free).

    collate  a training stage's rows selected from cached Arrow batches -> padded S_V, tokenised
             targets and queries
"""
