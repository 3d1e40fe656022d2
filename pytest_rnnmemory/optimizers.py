"""The optimizers a suite can name, as torch defines them."""

from __future__ import annotations

import inspect

import torch

#: ``train.optimizer`` -> torch's optimizer. Each works elementwise, so trials stacked in one
#: tensor keep separate state.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def make_optimizer(
    name: str, params: list[torch.Tensor], lr: float, device: torch.device
) -> torch.optim.Optimizer:
    """torch's optimizer ``name`` over ``params`` with learning rate ``lr``, its other settings torch's."""
    kwargs: dict[str, object] = {"lr": lr}
    if name == "adam":
        kwargs["fused"] = device.type in ("cpu", "cuda")
    return OPTIMIZERS[name](params, **kwargs)


def torch_defaults(name: str) -> dict[str, object]:
    """The hyper-parameters torch's optimizer ``name`` uses when given only a learning rate.

    Read from the constructor's signature: building an optimizer would import
    ``torch._dynamo`` (over a second), which a case of the native scheme never needs.
    """
    signature = inspect.signature(OPTIMIZERS[name].__init__)
    return {
        key: p.default
        for key, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty and key != "lr"
    }
