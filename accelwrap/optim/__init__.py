"""Optimizer wrappers, constructors, optimizers and parameter schedulers (mirrors ``mmengine.optim``)."""

__all__: list[str] = []
