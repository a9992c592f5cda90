"""The LightNAS constants that several layers default to: one value each, imported, never copied.

The strategy, :class:`~nni_lightnas.search.SearchConfig`, the CLI and the budget schedule all
default to these (this module imports nothing, so the CLI can read them without loading torch).

>>> PAPER_ARC_LEARNING_RATE, PAPER_LAMBDA_LR, LR_ANNEAL_THRESHOLD, DEFAULT_LANDING_TOLERANCE
(0.001, 0.0005, 0.02, 0.01)
"""

__all__ = ['PAPER_ARCH_STEPS', 'PAPER_ARC_LEARNING_RATE', 'PAPER_LAMBDA_LR', 'LR_ANNEAL_THRESHOLD',
           'DEFAULT_LANDING_TOLERANCE']

#: Alpha steps of the paper's search: 80 search epochs of ImageNet (1.28 M images) at batch 256.
PAPER_ARCH_STEPS = 400_000
#: The paper's Adam learning rate of alpha at that budget.
PAPER_ARC_LEARNING_RATE = 1e-3
#: The paper's step of the lambda ascent at that budget.
PAPER_LAMBDA_LR = 5e-4
#: Relative latency error under which the alpha learning rate is annealed (the paper's rule, near the end).
LR_ANNEAL_THRESHOLD = 0.02
#: Relative error within which the export must lie when the argmax misses the target.
DEFAULT_LANDING_TOLERANCE = 0.01
