"""Architecture graphs: one encoding for chain spaces and cell spaces.

Latency predictors read every architecture through a :class:`GraphSpace`, which knows
the architecture's *slots* (a searchable layer of a chain space, an edge of a cell) and
the candidate ops of each slot. An architecture is one op per slot; its soft form is a
probability vector per slot (``softmax(alpha)`` during a search), stored as a tensor
``probs`` of shape ``(batch, num_slots, max_candidates)``. Everything a predictor sees is
computed from ``probs`` with differentiable tensor operations:

* the flattened one-hot encoding (``probs.flatten(1)``);
* node features of the architecture graph (:meth:`GraphSpace.node_features`): op-type
  one-hot over the space's op vocabulary plus numeric features (kernel, expansion,
  groups, channels, stride, input size, MACs and parameters of the op at that slot);
* the adjacency of the graph (:meth:`GraphSpace.adjacency`);
* whole-network hand features (:meth:`GraphSpace.summary_features`): counts of each op
  type, MACs, parameters, and for cells the ops on live paths.

Three spaces are built in:

* :class:`LightNetGraphSpace`: our LightNAS spaces (a :class:`SpaceConfig` preset); the
  architecture string is the LightNet string ``MBK3E6-skip-...``;
* :class:`FBNetGraphSpace`: the 22-layer FBNet space of HW-NAS-Bench / HELP (CIFAR-100
  setting), string ``k3_e1-skip-k5_e6_...`` (ops joined by ``-``);
* :class:`NasBench201GraphSpace`: NAS-Bench-201 cells, string
  ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

The graph of a chain space is ``input -> layer 0 -> ... -> layer n-1 -> output``. A
NAS-Bench-201 cell has its ops on edges; its graph has one node per edge (op) plus the
input and output nodes, and an edge ``u -> v`` when the op of ``u`` ends where the op of
``v`` starts. A ``none`` op removes its node's edges (with soft probabilities each edge is
weighted by ``(1 - p_none)`` of both ends), so the node count is fixed per space.

:class:`ArchGraph` is the plain (numpy) graph of one architecture;
:meth:`ArchGraph.to_string` converts it back to the architecture string, so the
converters :func:`graph_from_lightnet`, :func:`graph_from_fbnet` and
:func:`graph_from_nasbench201` round-trip.

Examples
--------
>>> graph = graph_from_nasbench201('|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|')
>>> graph.num_nodes, int(graph.adjacency.sum())
(8, 6)
>>> graph.to_string()
'|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|'
"""

from __future__ import annotations

import abc
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch

__all__ = [
    'ArchGraph', 'GraphSpace', 'LightNetGraphSpace', 'FBNetGraphSpace', 'NasBench201GraphSpace',
    'NUMERIC_FEATURES', 'graph_from_lightnet', 'graph_from_fbnet', 'graph_from_nasbench201',
    'space_from_dict', 'detect_space',
]

_logger = logging.getLogger(__name__)

#: Numeric features of an op at a slot, in the order of the last axis of the op table.
NUMERIC_FEATURES: tuple[str, ...] = ('kernel', 'expansion', 'groups', 'in_chs', 'out_chs', 'stride',
                                     'input_size', 'macs_m', 'params_k', 'memory_k')
_INPUT, _OUTPUT = 'input', 'output'


@dataclass(frozen=True)
class ArchGraph:
    """The graph of one architecture.

    Attributes
    ----------
    space
        Name of the :class:`GraphSpace` it belongs to.
    node_ops
        Op type of every node (``'input'`` and ``'output'`` for the two end nodes).
    node_slots
        Slot (layer or cell edge) of every node, ``-1`` for the end nodes.
    node_features
        ``(num_nodes, len(NUMERIC_FEATURES))`` numeric features (see :data:`NUMERIC_FEATURES`).
    adjacency
        ``(num_nodes, num_nodes)`` 0/1 matrix, ``adjacency[u, v] = 1`` for an edge ``u -> v``.

    Examples
    --------
    >>> graph = graph_from_fbnet('-'.join(['k3_e6'] * 22))
    >>> graph.num_nodes, graph.node_ops[1], float(graph.node_features[1, 0])
    (24, 'k3_e6', 3.0)
    """

    space: str
    node_ops: tuple[str, ...]
    node_slots: tuple[int, ...]
    node_features: np.ndarray
    adjacency: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.node_ops)

    def slot_ops(self) -> tuple[str, ...]:
        """The op of every slot, in slot order."""
        pairs = sorted((slot, op) for slot, op in zip(self.node_slots, self.node_ops) if slot >= 0)
        return tuple(op for _, op in pairs)

    def to_string(self) -> str:
        """The architecture string this graph encodes (inverse of the converters)."""
        return _BUILTIN_FORMATTERS[self.space.split(':')[0]](self.slot_ops())


class GraphSpace(abc.ABC):
    """Slots, candidates and graph structure of one family of architectures.

    Subclasses set :attr:`name`, :attr:`candidates` (op names per slot), :attr:`vocabulary`
    (all op types) and the op table (numeric features per slot and candidate), and implement
    :meth:`parse`, :meth:`format` and :meth:`adjacency`.
    """

    name: str
    #: Candidate op names per slot.
    candidates: list[list[str]]
    #: All op types of the space (the node-type one-hot).
    vocabulary: list[str]

    def __init__(self) -> None:
        self._tables: dict[str, torch.Tensor] | None = None

    # --- encoding -------------------------------------------------------------------------
    @property
    def num_slots(self) -> int:
        return len(self.candidates)

    @property
    def max_candidates(self) -> int:
        return max(len(names) for names in self.candidates)

    @property
    def num_nodes(self) -> int:
        return self.num_slots + 2

    @abc.abstractmethod
    def parse(self, arch: str) -> tuple[str, ...]:
        """Ops per slot of an architecture string (raises ``ValueError`` naming bad ops)."""

    @abc.abstractmethod
    def format(self, ops: Sequence[str]) -> str:
        """Architecture string of ops per slot."""

    @abc.abstractmethod
    def op_features(self, slot: int, op: str) -> list[float]:
        """Numeric features (:data:`NUMERIC_FEATURES`) of ``op`` at ``slot``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; :func:`space_from_dict` rebuilds the space."""
        return {'type': type(self).__name__}

    def ops_of(self, arch: str | Sequence[str] | ArchGraph) -> tuple[str, ...]:
        """Ops per slot of a string, a list of op names or an :class:`ArchGraph` (validated)."""
        if isinstance(arch, ArchGraph):
            ops = arch.slot_ops()
        elif isinstance(arch, str):
            return self.parse(arch)
        else:
            ops = tuple(arch)
        if len(ops) != self.num_slots:
            raise ValueError(f'architecture has {len(ops)} ops, space {self.name!r} has {self.num_slots} slots: {ops!r}')
        for slot, op in enumerate(ops):
            if op not in self.candidates[slot]:
                raise ValueError(f'unknown op {op!r} at slot {slot} of space {self.name!r}; '
                                 f'accepted: {self.candidates[slot]}')
        return tuple(ops)

    def indices(self, archs: Sequence[str | Sequence[str] | ArchGraph]) -> np.ndarray:
        """``(len(archs), num_slots)`` candidate indices."""
        rows = []
        for arch in archs:
            ops = self.ops_of(arch)
            rows.append([self.candidates[slot].index(op) for slot, op in enumerate(ops)])
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), self.num_slots)

    def one_hot(self, archs: Sequence[str | Sequence[str] | ArchGraph]) -> torch.Tensor:
        """``(batch, num_slots, max_candidates)`` one-hot probabilities."""
        index = torch.from_numpy(self.indices(archs))
        return torch.nn.functional.one_hot(index, self.max_candidates).float()

    def candidate_mask(self) -> torch.Tensor:
        """``(num_slots, max_candidates)``: 1 where a candidate exists (slots may have fewer)."""
        mask = torch.zeros(self.num_slots, self.max_candidates)
        for slot, names in enumerate(self.candidates):
            mask[slot, :len(names)] = 1
        return mask

    # --- tables -----------------------------------------------------------------------------
    def tables(self) -> dict[str, torch.Tensor]:
        """Per (slot, candidate) op-type one-hot ``types`` and numeric features ``numeric``."""
        if self._tables is None:
            num_types = len(self.vocabulary) + 2
            types = torch.zeros(self.num_slots, self.max_candidates, num_types)
            numeric = torch.zeros(self.num_slots, self.max_candidates, len(NUMERIC_FEATURES))
            for slot, names in enumerate(self.candidates):
                for position, op in enumerate(names):
                    types[slot, position, self.vocabulary.index(op)] = 1
                    numeric[slot, position] = torch.tensor(self.op_features(slot, op), dtype=torch.float32)
            self._tables = {'types': types, 'numeric': numeric}
        return self._tables

    # --- differentiable features -------------------------------------------------------------
    def node_features(self, probs: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
        """``(batch, num_nodes, len(vocabulary) + 2 + len(NUMERIC_FEATURES))`` node features.

        Node 0 is the input, nodes ``1..num_slots`` the slots, the last node the output.
        ``normalized`` applies ``log1p`` to the numeric features (the scale a network reads).
        """
        tables = self.tables()
        types = torch.einsum('bsc,sct->bst', probs, tables['types'])
        numeric = torch.einsum('bsc,scf->bsf', probs, tables['numeric'])
        if normalized:
            numeric = torch.log1p(numeric.clamp_min(0))
        batch = probs.shape[0]
        num_types = types.shape[-1]
        ends = torch.zeros(batch, 2, num_types + numeric.shape[-1], dtype=probs.dtype)
        ends[:, 0, num_types - 2] = 1
        ends[:, 1, num_types - 1] = 1
        slots = torch.cat([types, numeric], dim=-1)
        return torch.cat([ends[:, :1], slots, ends[:, 1:]], dim=1)

    def adjacency(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, num_nodes, num_nodes)`` weighted adjacency; a chain by default."""
        size = self.num_nodes
        chain = torch.diag(torch.ones(size - 1), diagonal=1)
        return chain.unsqueeze(0).expand(probs.shape[0], size, size).to(probs.dtype)

    def summary_features(self, probs: torch.Tensor) -> torch.Tensor:
        """Whole-network features ``(batch, F)``: op-type counts, total MACs / params / memory."""
        tables = self.tables()
        counts = torch.einsum('bsc,sct->bt', probs, tables['types'])[:, :len(self.vocabulary)]
        numeric = torch.einsum('bsc,scf->bf', probs, tables['numeric'])
        totals = numeric[:, [NUMERIC_FEATURES.index('macs_m'), NUMERIC_FEATURES.index('params_k'),
                             NUMERIC_FEATURES.index('memory_k')]]
        return torch.cat([counts, totals], dim=1)

    # --- graphs -------------------------------------------------------------------------------
    def to_graph(self, arch: str | Sequence[str]) -> ArchGraph:
        """The :class:`ArchGraph` of one architecture."""
        ops = self.ops_of(arch)
        probs = self.one_hot([ops])
        with torch.no_grad():
            numeric = self.node_features(probs, normalized=False)[0, :, -len(NUMERIC_FEATURES):].numpy()
            adjacency = (self.adjacency(probs)[0].numpy() > 0.5).astype(np.float32)
        return ArchGraph(self.name, (_INPUT,) + ops + (_OUTPUT,), (-1,) + tuple(range(len(ops))) + (-1,),
                         numeric.astype(np.float32), adjacency)


# ----------------------------------------------------------------------------------------------
# Chain spaces
# ----------------------------------------------------------------------------------------------

def _mb_features(in_chs: int, out_chs: int, stride: int, input_size: int, kernel: int, expansion: float,
                 groups: int = 1) -> list[float]:
    """Features of an inverted residual (1x1 expand, kxk depthwise with stride, 1x1 project)."""
    mid_chs = int(round(in_chs * expansion))
    out_size = (input_size - 1) // stride + 1
    macs = 0.0
    params = 0.0
    memory = in_chs * input_size ** 2 + out_chs * out_size ** 2
    if mid_chs != in_chs:
        macs += in_chs * mid_chs * input_size ** 2 / groups
        params += in_chs * mid_chs / groups
        memory += mid_chs * input_size ** 2
    macs += mid_chs * kernel ** 2 * out_size ** 2
    params += mid_chs * kernel ** 2
    memory += mid_chs * out_size ** 2
    macs += mid_chs * out_chs * out_size ** 2 / groups
    params += mid_chs * out_chs / groups
    return [kernel, expansion, groups, in_chs, out_chs, stride, input_size, macs / 1e6, params / 1e3, memory / 1e3]


def _skip_features(in_chs: int, out_chs: int, stride: int, input_size: int) -> list[float]:
    """Features of ``skip``: identity, or a strided 1x1 conv when the shape changes."""
    if stride == 1 and in_chs == out_chs:
        return [0, 0, 0, in_chs, out_chs, stride, input_size, 0, 0, 0]
    out_size = (input_size - 1) // stride + 1
    macs = in_chs * out_chs * out_size ** 2
    memory = in_chs * input_size ** 2 + out_chs * out_size ** 2
    return [1, 0, 1, in_chs, out_chs, stride, input_size, macs / 1e6, in_chs * out_chs / 1e3, memory / 1e3]


@dataclass(frozen=True)
class _ChainLayer:
    in_chs: int
    out_chs: int
    stride: int
    input_size: int


class LightNetGraphSpace(GraphSpace):
    """Our LightNAS spaces as graphs: one slot per searchable layer.

    Parameters
    ----------
    preset
        Preset name (``'fashion_mnist'``, ``'tiny'``, ...) or a :class:`SpaceConfig`.
    candidates
        Op names per layer label; defaults to the seven LightNAS ops on every layer.

    Examples
    --------
    >>> space = LightNetGraphSpace('tiny')
    >>> space.num_slots, space.format(space.parse('MBK3E6-skip-MBK7E3'))
    (3, 'MBK3E6-skip-MBK7E3')
    """

    def __init__(self, preset: Any = 'fashion_mnist', *, candidates: Mapping[str, Sequence[str]] | None = None):
        super().__init__()
        from nni_lightnas.search_spaces import OP_NAMES, layer_specs, resolve_config
        self.config = resolve_config(preset)
        self.specs = layer_specs(self.config)
        self.labels = [spec.label for spec in self.specs]
        if candidates is None:
            candidates = {label: list(OP_NAMES) for label in self.labels}
        missing = [label for label in self.labels if label not in candidates]
        if missing:
            raise ValueError(f'candidates lack layers {missing}; got {sorted(candidates)}')
        self.candidates = [list(candidates[label]) for label in self.labels]
        vocabulary = list(OP_NAMES)
        for names in self.candidates:
            vocabulary += [op for op in names if op not in vocabulary]
        self.vocabulary = vocabulary
        self.name = f'lightnet:{self.config.fingerprint()}'

    def parse(self, arch: str) -> tuple[str, ...]:
        from nni_lightnas.search_spaces import decode_arch
        return self.ops_of(decode_arch(arch, self.config))

    def format(self, ops: Sequence[str]) -> str:
        return _format_lightnet(ops)

    def op_features(self, slot: int, op: str) -> list[float]:
        from nni_lightnas.search_spaces import parse_op_name
        spec = self.specs[slot]
        parsed = parse_op_name(op)
        if parsed.is_skip:
            return _skip_features(spec.in_chs, spec.out_chs, spec.stride, spec.input_size)
        return _mb_features(spec.in_chs, spec.out_chs, spec.stride, spec.input_size,
                            parsed.dw_kernel_size, parsed.exp_ratio)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {'type': type(self).__name__, 'config': self.config.to_dict(),
                'candidates': dict(zip(self.labels, self.candidates))}


def _format_lightnet(ops: Sequence[str]) -> str:
    from nni_lightnas.search_spaces import encode_arch
    return encode_arch(ops)


#: FBNet candidates (HW-NAS-Bench / HELP): kernel, expansion, groups of the 1x1 convs.
FBNET_OPS: dict[str, tuple[int, int, int]] = {
    'k3_e1': (3, 1, 1), 'k3_e1_g2': (3, 1, 2), 'k3_e3': (3, 3, 1), 'k3_e6': (3, 6, 1),
    'k5_e1': (5, 1, 1), 'k5_e1_g2': (5, 1, 2), 'k5_e3': (5, 3, 1), 'k5_e6': (5, 6, 1), 'skip': (0, 0, 0),
}
#: (out_chs, num_layers, first stride) of the FBNet stages, CIFAR setting (32x32 input, stem 3x3 s1 -> 16).
FBNET_STAGES: tuple[tuple[int, int, int], ...] = (
    (16, 1, 1), (24, 4, 1), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))


class FBNetGraphSpace(GraphSpace):
    """The FBNet space of HW-NAS-Bench / HELP: 22 layers, 9 candidates each.

    The stage table (:data:`FBNET_STAGES`) follows the CIFAR-100 setting of HW-NAS-Bench as
    far as the public data says: channels 16..352 over 1,4,4,4,4,4,1 layers; the strides and
    the 32x32 input are our assumption (only the numeric features depend on them).

    Examples
    --------
    >>> space = FBNetGraphSpace()
    >>> space.num_slots, len(space.vocabulary)
    (22, 9)
    """

    name = 'fbnet'

    def __init__(self) -> None:
        super().__init__()
        self.candidates = [list(FBNET_OPS) for _ in range(22)]
        self.vocabulary = list(FBNET_OPS)
        layers, in_chs, size = [], 16, 32
        for out_chs, num_layers, first_stride in FBNET_STAGES:
            for position in range(num_layers):
                stride = first_stride if position == 0 else 1
                layers.append(_ChainLayer(in_chs, out_chs, stride, size))
                size, in_chs = (size - 1) // stride + 1, out_chs
        self.layers = layers

    def parse(self, arch: str) -> tuple[str, ...]:
        if not isinstance(arch, str):
            raise TypeError(f'FBNet architecture must be a string, got {type(arch).__name__}')
        ops = tuple(part.strip() for part in arch.strip().split('-'))
        return self.ops_of(ops)

    def format(self, ops: Sequence[str]) -> str:
        return '-'.join(ops)

    def op_features(self, slot: int, op: str) -> list[float]:
        layer = self.layers[slot]
        kernel, expansion, groups = FBNET_OPS[op]
        if op == 'skip':
            return _skip_features(layer.in_chs, layer.out_chs, layer.stride, layer.input_size)
        return _mb_features(layer.in_chs, layer.out_chs, layer.stride, layer.input_size, kernel, expansion, groups)


# ----------------------------------------------------------------------------------------------
# NAS-Bench-201 cells
# ----------------------------------------------------------------------------------------------

NB201_OPS: tuple[str, ...] = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')
#: (source node, target node) of the six cell edges, in string order.
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
_NB201_TOKEN = re.compile(r'^([a-z0-9_]+)~(\d+)$')


class NasBench201GraphSpace(GraphSpace):
    """NAS-Bench-201 cells: six edge slots, five candidates each, one node per edge.

    Numeric features describe one op in the CIFAR-10 network (16 channels at 32x32 in the
    first of its three stages; MACs are summed over the 15 cells, which all cost the same
    because channels double when the size halves).

    Examples
    --------
    >>> space = NasBench201GraphSpace()
    >>> space.parse('|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|')[:3]
    ('none', 'skip_connect', 'nor_conv_1x1')
    """

    name = 'nasbench201'

    def __init__(self) -> None:
        super().__init__()
        self.candidates = [list(NB201_OPS) for _ in NB201_EDGES]
        self.vocabulary = list(NB201_OPS)

    def parse(self, arch: str) -> tuple[str, ...]:
        if not isinstance(arch, str):
            raise TypeError(f'NAS-Bench-201 architecture must be a string, got {type(arch).__name__}')
        nodes = arch.strip().split('+')
        if len(nodes) != 3:
            raise ValueError(f'NAS-Bench-201 string needs 3 node groups joined by "+", got {arch!r}')
        ops = []
        for target, group in enumerate(nodes, start=1):
            tokens = [token for token in group.strip().strip('|').split('|')]
            if len(tokens) != target:
                raise ValueError(f'node {target} of {arch!r} must have {target} input edges, got {tokens}')
            for source, token in enumerate(tokens):
                match = _NB201_TOKEN.match(token.strip())
                if not match or int(match.group(2)) != source:
                    raise ValueError(f'bad edge {token!r} in {arch!r}; expected "op~{source}"')
                ops.append(match.group(1))
        order = [index for target in (1, 2, 3) for index, edge in enumerate(NB201_EDGES) if edge[1] == target]
        ops_by_slot = [''] * 6
        for position, slot in enumerate(order):
            ops_by_slot[slot] = ops[position]
        return self.ops_of(ops_by_slot)

    def format(self, ops: Sequence[str]) -> str:
        return _format_nasbench201(ops)

    def op_features(self, slot: int, op: str) -> list[float]:
        chs, size, cells = 16, 32, 15
        if op in ('none', 'skip_connect'):
            return [0, 0, 0, chs, chs, 1, size, 0, 0, 0]
        if op == 'avg_pool_3x3':
            return [3, 0, 0, chs, chs, 1, size, cells * chs * 9 * size ** 2 / 1e6, 0, 2 * cells * chs * size ** 2 / 1e3]
        kernel = 1 if op == 'nor_conv_1x1' else 3
        macs = cells * chs * chs * kernel ** 2 * size ** 2  # ReLU-conv-BN
        return [kernel, 1, 1, chs, chs, 1, size, macs / 1e6, cells * chs * chs * kernel ** 2 / 1e3,
                2 * cells * chs * size ** 2 / 1e3]

    def _alive(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, 6)``: probability that each edge carries an op other than ``none``."""
        return 1 - probs[..., NB201_OPS.index('none')]

    def adjacency(self, probs: torch.Tensor) -> torch.Tensor:
        batch = probs.shape[0]
        size = self.num_nodes
        alive = self._alive(probs)
        ones = torch.ones(batch, 1, dtype=probs.dtype)
        node_alive = torch.cat([ones, alive, ones], dim=1)  # input, six edges, output
        structure = torch.zeros(size, size)
        for u, (source_u, target_u) in enumerate(NB201_EDGES, start=1):
            if source_u == 0:
                structure[0, u] = 1
            if target_u == 3:
                structure[u, size - 1] = 1
            for v, (source_v, _) in enumerate(NB201_EDGES, start=1):
                if source_v == target_u:
                    structure[u, v] = 1
        return structure * node_alive.unsqueeze(2) * node_alive.unsqueeze(1)

    def live_edges(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, 6)``: soft indicator that an edge lies on a path from the cell input to its output."""
        alive = self._alive(probs)
        edge = {pair: alive[:, index] for index, pair in enumerate(NB201_EDGES)}
        reach = {0: torch.ones_like(alive[:, 0])}
        for target in (1, 2, 3):
            miss = torch.ones_like(alive[:, 0])
            for source in range(target):
                miss = miss * (1 - reach[source] * edge[(source, target)])
            reach[target] = 1 - miss
        coreach = {3: torch.ones_like(alive[:, 0])}
        for source in (2, 1, 0):
            miss = torch.ones_like(alive[:, 0])
            for target in range(source + 1, 4):
                miss = miss * (1 - edge[(source, target)] * coreach[target])
            coreach[source] = 1 - miss
        return torch.stack([reach[s] * edge[(s, t)] * coreach[t] for s, t in NB201_EDGES], dim=1)

    def summary_features(self, probs: torch.Tensor) -> torch.Tensor:
        base = super().summary_features(probs)
        live = self.live_edges(probs)
        alive = self._alive(probs).clamp_min(1e-6)
        # probability of op o at edge e, given the edge is live: p(o) * live / alive for o != none
        live_probs = probs * (live / alive).unsqueeze(-1)
        live_counts = live_probs.sum(1)[:, 1:]
        tables = self.tables()
        live_macs = torch.einsum('bsc,sc->b', live_probs, tables['numeric'][..., NUMERIC_FEATURES.index('macs_m')])
        # nodes 1 and 2 compute a sum when they have a live input
        # per edge: which op it carries if it is live (a dead op costs time but feeds nothing)
        return torch.cat([base, live_counts, live_macs.unsqueeze(1), live.sum(1, keepdim=True),
                          live_probs[..., 1:].flatten(1)], dim=1)


def _format_nasbench201(ops: Sequence[str]) -> str:
    ops = list(ops)
    if len(ops) != 6:
        raise ValueError(f'a NAS-Bench-201 cell has 6 edges, got {len(ops)} ops: {ops}')
    groups = []
    for target in (1, 2, 3):
        tokens = [f'{ops[index]}~{source}' for index, (source, t) in enumerate(NB201_EDGES) if t == target]
        groups.append('|' + '|'.join(tokens) + '|')
    return '+'.join(groups)


_BUILTIN_FORMATTERS = {
    'lightnet': _format_lightnet,
    'fbnet': lambda ops: '-'.join(ops),
    'nasbench201': _format_nasbench201,
}


# ----------------------------------------------------------------------------------------------
# Converters and helpers
# ----------------------------------------------------------------------------------------------

def graph_from_lightnet(arch: Any, preset: Any = 'fashion_mnist') -> ArchGraph:
    """Graph of a LightNet (string, op list or NNI sample dict) of a preset.

    Examples
    --------
    >>> graph = graph_from_lightnet('MBK3E6-skip-MBK7E3', 'tiny')
    >>> graph.node_ops, graph.to_string()
    (('input', 'MBK3E6', 'skip', 'MBK7E3', 'output'), 'MBK3E6-skip-MBK7E3')
    """
    from nni_lightnas.search_spaces import decode_arch
    space = LightNetGraphSpace(preset)
    return space.to_graph(decode_arch(arch, space.config))


def graph_from_fbnet(arch: str) -> ArchGraph:
    """Graph of an FBNet architecture string (22 ops joined by ``-``).

    Examples
    --------
    >>> graph_from_fbnet('-'.join(['skip'] * 22)).to_string().count('skip')
    22
    """
    return _FBNET.to_graph(arch)


def graph_from_nasbench201(arch: str) -> ArchGraph:
    """Graph of a NAS-Bench-201 cell string (see the module docstring)."""
    return _NB201.to_graph(arch)


_FBNET = FBNetGraphSpace()
_NB201 = NasBench201GraphSpace()

SpaceLike = Union[GraphSpace, str]


def space_from_dict(data: Mapping[str, Any]) -> GraphSpace:
    """Rebuild a space from :meth:`GraphSpace.to_dict`.

    Examples
    --------
    >>> space_from_dict(FBNetGraphSpace().to_dict()).name
    'fbnet'
    """
    kind = data.get('type')
    if kind == 'FBNetGraphSpace':
        return FBNetGraphSpace()
    if kind == 'NasBench201GraphSpace':
        return NasBench201GraphSpace()
    if kind == 'LightNetGraphSpace':
        from nni_lightnas.search_spaces import SpaceConfig
        return LightNetGraphSpace(SpaceConfig.from_dict(data['config']), candidates=data.get('candidates'))
    raise ValueError(f'unknown graph space type {kind!r}; accepted: FBNetGraphSpace, NasBench201GraphSpace, '
                     'LightNetGraphSpace')


def detect_space(archs: Sequence[str], *, preset: Any = None) -> GraphSpace:
    """Guess the space of architecture strings: NAS-Bench-201, FBNet or a LightNAS preset.

    A LightNet string needs ``preset``, or it is matched to the one preset with as many layers.

    Examples
    --------
    >>> detect_space(['|none~0|+|none~0|none~1|+|none~0|none~1|none~2|']).name
    'nasbench201'
    >>> detect_space(['MBK3E6-skip-MBK7E3']).config.name
    'tiny'
    """
    if not archs:
        raise ValueError('no architectures to detect the space from')
    first = str(archs[0]).strip()
    if preset is not None:
        return LightNetGraphSpace(preset)
    if first.startswith('|'):
        return NasBench201GraphSpace()
    tokens = first.split('-')
    # 'skip' alone is also a LightNet op: all-skip strings are FBNet only at FBNet's length
    if all(token in FBNET_OPS for token in tokens) and (len(tokens) == 22 or any(t != 'skip' for t in tokens)):
        return FBNetGraphSpace()
    from nni_lightnas.search_spaces import PRESETS, decode_arch
    try:
        ops = decode_arch(first)
    except ValueError as error:
        raise ValueError(f'cannot tell the space of architecture {first!r}: not a NAS-Bench-201 string, '
                         f'not FBNet ops ({", ".join(FBNET_OPS)}), not a LightNet ({error})') from None
    matches = [name for name, config in PRESETS.items() if config.num_layers == len(ops)]
    if len(matches) != 1:
        raise ValueError(f'LightNet {first!r} has {len(ops)} layers; give the preset '
                         f'(presets and layer counts: {({n: c.num_layers for n, c in PRESETS.items()})})')
    _logger.info('architectures read as LightNets of preset %s', matches[0])
    return LightNetGraphSpace(matches[0])
