"""Plots of training runs and models (matplotlib, Agg, no pyplot state).

* :func:`plot_curves` - loss / accuracy / learning-rate curves from per-epoch records.
* :func:`confusion_matrix`, :func:`plot_confusion` - counts and their heat map.
* :func:`plot_filters` - first-layer convolution kernels as an image grid.
"""

from jaxdl.viz.plots import confusion_matrix, plot_confusion, plot_curves, plot_filters

__all__ = ["confusion_matrix", "plot_confusion", "plot_curves", "plot_filters"]
