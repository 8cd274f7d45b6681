"""Central differences of a scalar loss with respect to single entries of a Keras variable: the
independent reference the gradient tests compare TRECConv2D's analytic kernel gradient with."""

import numpy as np


def central_difference(variable, loss, index, eps: float) -> float:
    """(loss(v + eps e_i) - loss(v - eps e_i)) / (2 eps) for the entry ``index`` of ``variable``;
    the variable is restored afterwards."""
    saved = variable.numpy()
    vals = []
    for sign in (1, -1):
        moved = saved.copy()
        moved[index] += sign * eps
        variable.assign(moved)
        vals.append(float(np.asarray(loss())))
    variable.assign(saved)
    return (vals[0] - vals[1]) / (2 * eps)
