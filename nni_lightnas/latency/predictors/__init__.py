"""Latency predictors fitted on measured architectures.

Kinds (:func:`make_predictor`): ``additive`` (least-squares per-op table, the baseline),
``mlp`` (LightNAS's MLP on the one-hot encoding), ``gnn`` (a graph convolutional network,
SurgeNAS), ``ensemble`` (a selected linear base with whole-network features plus a shrunk
residual MLP ensemble); ``best`` names the recommended kind (:data:`BEST_KIND`).

Examples
--------
>>> from nni_lightnas.latency.graphs import FBNetGraphSpace
>>> from nni_lightnas.latency.predictors import make_predictor
>>> predictor = make_predictor('best', FBNetGraphSpace())
>>> predictor.kind
'ensemble'
"""

from .base import FORMAT, PREDICTORS, FeatureEncoder, LatencyPredictor, load_latency_predictor, make_predictor, \
    register_predictor
from .additive import AdditivePredictor
from .mlp import MLPPredictor
from .gnn import GNNPredictor
from .ensemble import ResidualEnsemblePredictor
from .latency_model import PredictorLatencyModel, load_predictor

#: The kind ``best`` stands for.
BEST_KIND = 'ensemble'

__all__ = [
    'BEST_KIND', 'FORMAT', 'PREDICTORS', 'FeatureEncoder', 'LatencyPredictor', 'AdditivePredictor', 'MLPPredictor',
    'GNNPredictor', 'ResidualEnsemblePredictor', 'PredictorLatencyModel', 'load_predictor', 'load_latency_predictor',
    'make_predictor', 'register_predictor',
]
