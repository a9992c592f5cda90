"""SurgeNAS-style latency predictor: a graph convolutional network over the architecture graph."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..graphs import GraphSpace
from ._fitting import train_full_batch
from .base import LatencyPredictor, register_predictor
from .mlp import make_mlp

__all__ = ['GNNPredictor', 'GCNNet']

_logger = logging.getLogger(__name__)


class GraphConv(nn.Module):
    """One directed graph convolution: ``relu(W_self h + W_in (A^T h) + W_out (A h))``, degree-normalised."""

    def __init__(self, width: int):
        super().__init__()
        self.self_loop = nn.Linear(width, width)
        self.incoming = nn.Linear(width, width, bias=False)
        self.outgoing = nn.Linear(width, width, bias=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, hidden: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        in_degree = adjacency.sum(1).clamp_min(1).unsqueeze(-1)   # (b, n, 1): edges into each node
        out_degree = adjacency.sum(2).clamp_min(1).unsqueeze(-1)
        incoming = adjacency.transpose(1, 2) @ hidden / in_degree  # mean of predecessors
        outgoing = adjacency @ hidden / out_degree                 # mean of successors
        update = self.self_loop(hidden) + self.incoming(incoming) + self.outgoing(outgoing)
        return self.norm(torch.relu(update)) + hidden


class GCNNet(nn.Module):
    """Node features + adjacency (both from soft probabilities) -> GCN -> sum/mean readout -> ms."""

    def __init__(self, space: GraphSpace, *, width: int = 64, num_layers: int = 3, log_target: bool = True):
        super().__init__()
        self.space = space
        num_node_features = space.node_features(space.one_hot([[n[0] for n in space.candidates]])).shape[-1]
        self.register_buffer('node_mean', torch.zeros(num_node_features))
        self.register_buffer('node_std', torch.ones(num_node_features))
        self.embed = nn.Linear(num_node_features, width)
        self.layers = nn.ModuleList(GraphConv(width) for _ in range(num_layers))
        self.readout = make_mlp(2 * width, [width])
        self.log_target = bool(log_target)
        self.register_buffer('target_mean', torch.zeros(()))
        self.register_buffer('target_std', torch.ones(()))

    def calibrate(self, probs: torch.Tensor) -> None:
        with torch.no_grad():
            nodes = self.space.node_features(probs).flatten(0, 1)
            self.node_mean.copy_(nodes.mean(0))
            self.node_std.copy_(nodes.std(0).clamp_min(1e-3))

    def graphs(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised node features and adjacency of soft architectures."""
        nodes = (self.space.node_features(probs) - self.node_mean) / self.node_std
        return nodes, self.space.adjacency(probs)

    def standardised(self, probs: torch.Tensor) -> torch.Tensor:
        return self.from_graphs(*self.graphs(probs))

    def from_graphs(self, nodes: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.embed(nodes))
        for layer in self.layers:
            hidden = layer(hidden, adjacency)
        pooled = torch.cat([hidden.sum(1) / hidden.shape[1] ** 0.5, hidden.mean(1)], dim=-1)
        return self.readout(pooled).squeeze(-1)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        value = self.standardised(probs) * self.target_std + self.target_mean
        return torch.exp(value) if self.log_target else value


@register_predictor
class GNNPredictor(LatencyPredictor):
    """Graph neural network latency predictor (SurgeNAS, in the spirit of BRP-NAS's GCN).

    Nodes are the ops of the architecture graph with op-type one-hot and numeric features
    (kernel, expansion, groups, channels, stride, input size, MACs, parameters); the directed
    adjacency carries data flow (a NAS-Bench-201 ``none`` removes its edges). Several
    directed graph convolutions (predecessor and successor means, residual, layer norm) are
    followed by a sum + mean readout and an MLP. Node features and adjacency are linear in the
    op probabilities, so soft architectures give gradients.

    Options: ``width`` (64), ``num_layers`` (3), ``epochs`` (400), ``lr`` (3e-3),
    ``weight_decay`` (1e-4), ``log_target`` (True), ``max_node_passes`` (3,000,000: full-batch
    epochs are capped at this many node visits in all: 139 epochs for 900 FBNet architectures
    of 24 nodes, no cap for 900 NAS-Bench-201 cells of 8 nodes).

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import NasBench201GraphSpace
    >>> predictor = GNNPredictor(NasBench201GraphSpace(), epochs=20)
    >>> archs = ['|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|',
    ...          '|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|']
    >>> predictor.fit(archs, [1.0, 2.0]).predict(archs).shape
    (2,)
    """

    kind = 'gnn'

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {'width': 64, 'num_layers': 3, 'epochs': 400, 'lr': 3e-3, 'weight_decay': 1e-4, 'log_target': True,
                'max_node_passes': 3_000_000}

    def _build(self) -> nn.Module:
        return GCNNet(self.space, width=self.options['width'], num_layers=self.options['num_layers'],
                      log_target=self.options['log_target'])

    def _fit(self, probs: torch.Tensor, latency_ms: torch.Tensor) -> None:
        net = self._build()
        net.calibrate(probs)
        target = torch.log(latency_ms) if self.options['log_target'] else latency_ms
        net.target_mean.fill_(float(target.mean()))
        net.target_std.fill_(float(target.std().clamp_min(1e-6)))
        standardised = (target - net.target_mean) / net.target_std
        with torch.no_grad():  # the training graphs are fixed: build them once
            nodes, adjacency = net.graphs(probs)
        # full-batch epochs, capped so that many or large graphs keep the fit within CPU seconds
        node_passes_per_epoch = len(target) * self.space.num_nodes
        epochs = max(1, min(int(self.options['epochs']), -(-int(self.options['max_node_passes']) // node_passes_per_epoch)))
        self.fit_info['epochs'] = epochs
        loss = train_full_batch(_FixedGraphs(net, adjacency), nodes, standardised, epochs=epochs,
                                lr=self.options['lr'], weight_decay=self.options['weight_decay'])
        self.module = net
        self.fit_info['train_loss'] = loss


class _FixedGraphs(nn.Module):
    """Training view: node features in, standardised target out, adjacency fixed."""

    def __init__(self, net: GCNNet, adjacency: torch.Tensor):
        super().__init__()
        self.net = net
        self.adjacency = adjacency

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        return self.net.from_graphs(nodes, self.adjacency)
