"""Whether any gradient holds a NaN or an inf: one fused pass, no norm, no host sync.

``nonfinite.check='grad'`` without norm clipping has no norm to reuse. Computing one
(``torch._foreach_norm``, a stack and a final norm) costs several dispatched ops per
update; the question "is every gradient element finite?" needs one:
``torch._amp_foreach_non_finite_check_and_unscale_`` (the kernel of ``GradScaler.unscale_``,
on CPU and CUDA) with an unscale factor of exactly 1, which leaves every gradient value
unchanged (the kernel returns the value itself when the factor is 1) and sets a
one-element flag on the device when it meets a NaN/inf. The flag is read by the caller
(one host read, or none until the next update for ``policy='warn'``); a CPU flag shares
its memory with a numpy array, so reading it dispatches no op (:func:`read_flag`).

Sharded (``DTensor``) or other tensor-subclass gradients, gradients on several devices and
a torch without the kernel are not taken (:meth:`GradFlag.test` returns None): the caller
then measures the global norm instead. ``loss_normalization='tokens'`` scales the
gradients by the window's factor in the same kernel (its unscale factor), so the scaling
and the test are one pass.

Example:
    >>> import torch
    >>> flags = GradFlag()
    >>> grads = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    >>> read_flag(flags.test(grads))
    0.0
    >>> grads[1][0] = float('inf')
    >>> flag = flags.test(grads)
    >>> read_flag(flag), grads[0].tolist()
    (1.0, [1.0, 2.0])
    >>> flags.reset(flag)
    >>> scaled = [torch.tensor([0.5])]
    >>> float(flags.test(scaled, factor=0.25)), scaled[0].tolist()
    (0.0, [0.125])
"""

from __future__ import annotations

import torch

__all__ = ["GradFlag", "read_flag"]

_KERNEL = getattr(torch, "_amp_foreach_non_finite_check_and_unscale_", None)
_PLAIN = torch.Tensor


class GradFlag:
    """Tests gradients for NaN/inf in one fused pass; keeps one flag tensor per device.

    A flag stays set until :meth:`reset` (done by whoever reads it as set), so a clear
    flag costs no op at all per update.
    """

    def __init__(self) -> None:
        self._buffers: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def test(self, grads: list[torch.Tensor],
             factor: float | torch.Tensor | None = None) -> torch.Tensor | None:
        """Flag a NaN/inf in ``grads``; multiply them by ``factor`` in the same pass.

        Args:
            grads: The gradients of one update.
            factor: None (the values are left unchanged) or a number / one-element tensor
                to scale every gradient by (``loss_normalization='tokens'``), which then
                costs no pass of its own. The values tested are those before scaling.

        Returns:
            A one-element float tensor on the gradients' device, nonzero when some element
            of some gradient is NaN or inf; None when the fused kernel cannot take these
            gradients (none, sharded or subclass tensors, several devices, sparse, no
            kernel): then nothing was changed, not even by ``factor``.
        """
        if _KERNEL is None or not grads:
            return None
        for grad in grads:
            if type(grad) is not _PLAIN:
                return None
        device = grads[0].device
        buffers = self._buffers.get(device)
        if buffers is None:
            buffers = self._buffers[device] = (_new_flag(device), torch.ones(1, device=device))
        found, scale = buffers
        if factor is not None:  # a refused call must not have scaled a part: check first
            for grad in grads:
                if grad.device != device or grad.layout != torch.strided:
                    return None
            scale = (factor.reshape(1).to(device=device, dtype=torch.float32)
                     if isinstance(factor, torch.Tensor)
                     else torch.full((1,), factor, dtype=torch.float32, device=device))
        try:  # factor 1: every value is returned unchanged, only the flag is written
            _KERNEL(grads, found, scale)
        except (RuntimeError, NotImplementedError):  # several devices, sparse, no kernel here
            found.zero_()  # a part it did see may have set it
            return None
        return found

    @staticmethod
    def read(flag: torch.Tensor) -> float:
        """The flag's value (see :func:`read_flag`)."""
        return read_flag(flag)

    @staticmethod
    def reset(flag: torch.Tensor) -> None:
        """Clear a flag that was read as set.

        Args:
            flag: A tensor :meth:`test` returned.
        """
        flag.zero_()


def _new_flag(device: torch.device) -> torch.Tensor:
    """A clear flag; on the CPU it shares its memory with a numpy array read by
    :func:`read_flag` (no op dispatched to read it)."""
    if device.type == "cpu":
        try:
            import numpy
        except ImportError:  # numpy is optional for torch: read it with float()
            return torch.zeros(1)
        host = numpy.zeros(1, dtype=numpy.float32)
        flag = torch.from_numpy(host)
        flag.host_view = host
        return flag
    return torch.zeros(1, device=device)


def read_flag(flag: torch.Tensor) -> float:
    """The value of a flag from :meth:`GradFlag.test`: the one host read of the update.

    A CPU flag is read from its memory directly; any other is read with ``float()``
    (a device synchronisation).

    Args:
        flag: The flag tensor.

    Returns:
        0.0 when clear, 1.0 when set.
    """
    host = flag.__dict__.get("host_view")
    return float(host[0]) if host is not None else float(flag)
