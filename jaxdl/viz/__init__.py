"""Plots of training runs and models (matplotlib, Agg, no pyplot state).

* :func:`plot_curves` - loss / accuracy / learning-rate curves from per-epoch records.
* :func:`confusion_matrix`, :func:`plot_confusion` - counts and their heat map.
* :func:`plot_filters` - first-layer convolution kernels as an image grid.
* :mod:`jaxdl.viz.cnn` - what a CNN learned: :func:`first_conv_kernel`, :func:`feature_maps`,
  :func:`top_activating_patches`, :func:`saliency_map`, their plots, and :func:`visualize_run`.
"""

from jaxdl.viz.cnn import (feature_maps, first_conv_kernel, plot_feature_maps, plot_patches, plot_saliency,
                           saliency_map, top_activating_patches, visualize_run)
from jaxdl.viz.plots import confusion_matrix, plot_confusion, plot_curves, plot_filters

__all__ = ["confusion_matrix", "plot_confusion", "plot_curves", "plot_filters", "first_conv_kernel", "feature_maps",
           "plot_feature_maps", "top_activating_patches", "plot_patches", "saliency_map", "plot_saliency",
           "visualize_run"]
