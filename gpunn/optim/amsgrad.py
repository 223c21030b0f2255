"""AMSGrad: Adam whose denominator never shrinks."""

from .adam import Adam
from .references import _grad, _xp, _zeros_like

__all__ = ["AMSGrad"]


class AMSGrad(Adam):
    """AMSGrad:  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  v_max ← max(v_max, v);
    θ ← θ − η m̂ / (√(v_max/(1−β2ᵗ)) + ε),  m̂ = m/(1−β1ᵗ).

    Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018), in PyTorch's form
    (``torch.optim.Adam(amsgrad=True)``): the maximum is kept of the raw second moment v and the
    bias correction 1−β2ᵗ is applied to it afterwards, with ε added to the corrected root.  (optax's
    ``amsgrad`` keeps the maximum of the bias-corrected v̂ instead; the two differ while 1−β2ᵗ grows.)
    So the step size of each parameter, η/(√v̂_max + ε), can only shrink for a fixed η -- the
    property Adam lacks that the paper's convergence proof needs.

    Everything else is :class:`Adam`'s: the defaults (``lr=0.001``, ``beta1=0.9``, ``beta2=0.999``,
    ``eps=1e-8``, ``weight_decay=0``: L2 on weights only, as PyTorch's), ``eps_on`` and the bias
    corrections computed on the host.  State: ``m``, ``v``, ``v_max``; the step count ``t``.
    """

    rule = "amsgrad"
    slots = ("m", "v", "v_max")

    class Reference:
        """The textbook form, for tests: plain array math on dicts (see
        :mod:`gpunn.optim.references`)."""

        def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
            self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
            self.weight_decay = weight_decay
            self.iter = 0
            self.m = self.v = self.v_max = None

        def update(self, params, grads):
            xp = _xp(params)
            if self.m is None:
                self.m, self.v, self.v_max = _zeros_like(params), _zeros_like(params), _zeros_like(params)
            self.iter += 1
            for key in params.keys():
                g = _grad(params, grads, key, self.weight_decay)
                self.m[key] = self.beta1 * self.m[key] + (1 - self.beta1) * g
                self.v[key] = self.beta2 * self.v[key] + (1 - self.beta2) * g * g
                self.v_max[key] = xp.maximum(self.v_max[key], self.v[key])
                m_hat = self.m[key] / (1 - self.beta1**self.iter)
                v_hat = self.v_max[key] / (1 - self.beta2**self.iter)
                params[key] -= self.lr * m_hat / (xp.sqrt(v_hat) + self.eps)
