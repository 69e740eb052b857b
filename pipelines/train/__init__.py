"""Training on Ray Train, tracked in MLflow.

    train        `vljepa train`: the verb
    config       typed configs: the stages of paper §3.2 and one run's settings; run_args: the flags
                 train and train-decoder share; resume: what `--resume` may change
    driver       what every Ray Train driver shares (the run directory, MLflow, the trainer)
    worker       what every worker loop shares; loop: the predictor + y-encoder loop
    data         the training datasets streamed through Ray Data
    checkpoints  a checkpoint's files; preemption: a checkpoint on a node's preemption notice
    tracking     MLflow tracking of a run: the model logged as an MLflow model and registered
                 (mlflow_pyfunc_code: its pyfunc flavour, a file MLflow copies into the model)
"""
