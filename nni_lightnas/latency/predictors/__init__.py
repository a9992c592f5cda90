"""Latency predictors fitted on measured architectures.

Kinds (:func:`make_predictor`): ``additive`` (least-squares per-op table, the baseline),
``mlp`` (LightNAS's MLP on the one-hot encoding), ``gnn`` (a graph convolutional network,
SurgeNAS), ``ensemble`` (a selected linear base with whole-network features plus a shrunk
residual MLP ensemble), ``transfer`` (pre-trained on other devices' measurements, adapted to
the target from a few); ``best`` names the recommended kind (:data:`BEST_TRANSFER_KIND` when
pretraining data are given, else :data:`BEST_KIND`). :mod:`.tree_baseline` holds the
gradient-boosted tree that benchmarks compare with (not differentiable, so not a kind).

Examples
--------
>>> from nni_lightnas.latency.graphs import FBNetGraphSpace
>>> from nni_lightnas.latency.predictors import make_predictor
>>> predictor = make_predictor('best', FBNetGraphSpace())
>>> predictor.kind
'ensemble'
"""

from .base import BEST_KIND, BEST_TRANSFER_KIND, FORMAT, PREDICTORS, PRETRAINED_PREDICTORS, FeatureEncoder, \
    LatencyPredictor, load_latency_predictor, make_predictor, register_predictor
from .additive import AdditivePredictor
from .mlp import MLPPredictor
from .gnn import GNNPredictor
from .ensemble import ResidualEnsemblePredictor
from .pretrain import PretrainTable, SourceLatencyNet, pretrain_source_model, read_pretrain_table
from .transfer import TransferPredictor
from .latency_model import PredictorLatencyModel, load_predictor

__all__ = [
    'BEST_KIND', 'BEST_TRANSFER_KIND', 'FORMAT', 'PREDICTORS', 'PRETRAINED_PREDICTORS', 'FeatureEncoder',
    'LatencyPredictor', 'AdditivePredictor', 'MLPPredictor',
    'GNNPredictor', 'ResidualEnsemblePredictor', 'PredictorLatencyModel', 'load_predictor', 'load_latency_predictor',
    'make_predictor', 'register_predictor', 'TransferPredictor', 'PretrainTable', 'SourceLatencyNet',
    'pretrain_source_model', 'read_pretrain_table',
]
