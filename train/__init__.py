"""The training job that runs inside the images (`python train/train.py`, under torchrun on every node).

Its modules also run as scripts, with train/ first on sys.path, so they import each other by plain name
(`from config import ...`). The host's tests import the standard-library ones (preflight, peer_failure) as
`train.preflight`: train/ is a package, and none of its modules is called tasks.py any more, so invoke run from
train/ finds the repository's own tasks.py instead of the training tasks (training_tasks.py).
"""
