"""Single-path Gumbel choices: the supernet modules of the LightNAS strategy.

Each ``LayerChoice`` becomes a :class:`SinglePathMixedLayer` holding the candidates and
the layer's architecture logits ``alpha``. On :meth:`resample` it draws a hard one-hot
gate from Gumbel-softmax(alpha / tau); :meth:`forward` runs *only* the sampled candidate
and multiplies its output by the gate's value (1 in the forward pass), so the gradient
reaches alpha through the straight-through estimator while memory stays that of a single
path. :meth:`force` pins one candidate without a gate (fair warm-up); :meth:`pin` pins one
with a straight-through gate on softmax(alpha) (ordered differentiable sampling, SurgeNAS).

Identity mapping regularisation (SurgeNAS): with an ``aux`` module the layer returns
``op(x) + eta * aux(x)``, where ``aux`` is the identity, or 1x1 conv + BN when the shape
changes (a fresh copy of the layer's skip candidate: our ``SkipOp``, or an ``nn.Identity``
candidate of any space); the strategy decays ``eta`` to 0.

A ``Repeat`` with a depth choice becomes a :class:`SinglePathRepeat`: the same sampling over its
depths (``'1'``, ``'2'``, ...), running only the first ``d`` blocks, the gate on the last block's
output (NNI's ``PathSamplingRepeat`` with one sampled depth). Both are :class:`SinglePathChoice`,
the interface the strategy drives (``names``, ``label``, alpha, ``resample``, ``force``, ``pin``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from nni.mutable import Categorical
from nni.nas.nn.pytorch import LayerChoice, Repeat
# nni.nas.strategy first: imported from inside nni.nas.oneshot, it would find that package half-initialised
# and put placeholders (ImportFailedStrategy) in place of NNI's own one-shot strategies for the whole process.
import nni.nas.strategy  # noqa: F401,I001
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer

__all__ = ['SinglePathChoice', 'SinglePathMixedLayer', 'SinglePathRepeat']


class SinglePathChoice:
    """One searched choice of the supernet: ``names`` (its candidates), ``label`` and alpha ``_arch_alpha``.

    Holds the sampling state: the candidate the next forward runs (``_sampled_index``) and its
    straight-through gate (``_gate``, ``None`` without one). Subclasses set ``names``, ``label``,
    ``_arch_alpha`` and call :meth:`_init_sampling`.
    """

    names: list[str]
    label: str
    _arch_alpha: torch.Tensor

    def _init_sampling(self) -> None:
        self.tau = 5.0
        self._gate: torch.Tensor | None = None
        self._sampled_index = 0
        self.aux: torch.nn.Module | None = None
        self.eta = 0.0

    def add_identity_regularization(self) -> bool:
        """Give the choice an auxiliary identity path; ``False`` when it has no skip candidate to copy."""
        return False

    @property
    def sampled(self) -> str:
        """Name of the candidate the next forward runs."""
        return self.names[self._sampled_index]

    def probs(self) -> torch.Tensor:
        """softmax(alpha): the choice's candidate probabilities, differentiable."""
        return F.softmax(self._arch_alpha, dim=-1)

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        """Draw a hard one-hot gate from Gumbel-softmax with straight-through gradient."""
        if self.label in memo:
            self._sampled_index = self.names.index(memo[self.label])
            self._gate = None
            return {}
        gate = F.gumbel_softmax(self._arch_alpha, tau=self.tau, hard=True, dim=-1)
        self._gate = gate
        self._sampled_index = int(gate.detach().argmax())
        return {self.label: self.sampled}

    def force(self, index: int) -> None:
        """Run candidate ``index`` next, without a gate (no gradient to alpha)."""
        if not 0 <= index < len(self.names):
            raise IndexError(f'candidate index {index} out of range for {self.label} with {len(self.names)} ops')
        self._sampled_index = index
        self._gate = None

    def pin(self, index: int) -> None:
        """Run candidate ``index`` next, gated by a straight-through estimate of softmax(alpha).

        The gate's value is 1; its gradient is that of the candidate's probability.
        """
        self.force(index)
        probs = self.probs()
        one_hot = torch.zeros_like(probs)
        one_hot[index] = 1.0
        self._gate = one_hot - probs.detach() + probs

    def _gated(self, output: torch.Tensor) -> torch.Tensor:
        return output if self._gate is None else output * self._gate[self._sampled_index]


class SinglePathMixedLayer(SinglePathChoice, DifferentiableMixedLayer):
    """A ``LayerChoice`` that runs one candidate per step, chosen by hard Gumbel-softmax.

    Parameters
    ----------
    paths
        Candidates (name -> module).
    alpha
        Architecture logits of this layer (shared ``nn.Parameter``).
    label
        The choice's label.
    """

    def __init__(self, paths: dict[str, torch.nn.Module], alpha: torch.Tensor, label: str):
        super().__init__(paths, alpha, torch.nn.Softmax(-1), label)
        self._init_sampling()

    def add_identity_regularization(self) -> bool:
        """Give the layer its auxiliary identity path (a fresh copy of its skip candidate).

        A skip candidate is our ``SkipOp`` or an ``nn.Identity``. Returns whether the layer has one.
        """
        from nni_lightnas.search_spaces.blocks import SkipOp
        skips = [self[name] for name in self.names if isinstance(self[name], (SkipOp, torch.nn.Identity))]
        if not skips:
            return False
        aux = copy.deepcopy(skips[0])
        for module in aux.modules():
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()
        self.aux = aux
        return True

    def forward(self, *args, **kwargs):
        output = self._gated(self[self.sampled](*args, **kwargs))
        if self.aux is not None and self.eta > 0:
            output = output + self.eta * self.aux(*args, **kwargs)
        return output

    @classmethod
    def mutate(cls, module, name, memo, mutate_kwargs):
        if type(module) is LayerChoice:  # exactly LayerChoice, like NNI's own mixed layers
            if module.label not in memo:
                raise KeyError(f'LayerChoice {module.label} has no architecture parameter in the memo')
            # candidates by name as strings (a list's are '0', '1', ...), as latency models name them
            paths = {str(name): candidate for name, candidate in zip(module.names, module)}
            return cls(paths, memo[module.label], module.label)
        return None


class SinglePathRepeat(SinglePathChoice, Repeat, BaseSuperNetModule):
    """A ``Repeat`` with a depth choice that runs one depth per step, chosen like a :class:`SinglePathMixedLayer`'s op.

    Its candidates are the depths as strings (``'1'``, ``'2'``, ...); a forward runs the first
    ``d`` blocks of the sampled depth and multiplies the last one's output by the gate. Blocks
    that are ``LayerChoice`` layers become :class:`SinglePathMixedLayer` in turn.

    Parameters
    ----------
    blocks
        The ``Repeat``'s blocks, as many as its largest depth.
    depth
        Its depth choice (a categorical of integers).
    alpha
        Architecture logits of the depth (shared ``nn.Parameter``).

    Examples
    --------
    >>> from nni.mutable.frozen import frozen_context
    >>> from torch import nn
    >>> with frozen_context():  # as a one-shot strategy builds its supernet
    ...     repeat = SinglePathRepeat([nn.Linear(2, 2), nn.Linear(2, 2)], Categorical([1, 2], label='depth'),
    ...                               nn.Parameter(torch.zeros(2)))
    >>> repeat.force(0); repeat(torch.zeros(1, 2)).shape, repeat.sampled
    (torch.Size([1, 2]), '1')
    """

    _arch_parameter_names: list[str] = ['_arch_alpha']

    def __init__(self, blocks: list[torch.nn.Module], depth: Categorical, alpha: torch.Tensor):
        super().__init__(blocks, depth)
        self._arch_alpha = alpha
        self.names = [str(value) for value in depth.values]
        self.depths = [int(value) for value in depth.values]
        self._init_sampling()

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.depth_choice.label

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        """The argmax depth (NNI's export hook)."""
        if self.label in memo:
            return {}
        return {self.label: self.depths[int(torch.argmax(self._arch_alpha).item())]}

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        if self.label in memo:
            return {}
        return {self.label: dict(zip(self.depths, self.probs().detach().cpu().tolist()))}

    def arch_parameters(self):
        """The depth's alpha (not recursive)."""
        for name, parameter in self.named_parameters():
            if name in self._arch_parameter_names:
                yield parameter

    def forward(self, x):
        depth = self.depths[self._sampled_index]
        for block in self.blocks[:depth]:
            x = block(x)
        return self._gated(x) if depth > 0 else x

    @classmethod
    def mutate(cls, module, name, memo, mutate_kwargs):
        if type(module) is Repeat and isinstance(module.depth_choice, Categorical):
            label = module.depth_choice.label
            if label not in memo:
                raise KeyError(f'Repeat {name} (depth {label}) has no architecture parameter in the memo')
            return cls(list(module.blocks), module.depth_choice, memo[label])
        return None
