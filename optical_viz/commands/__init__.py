"""Command groups of the ``optical-viz`` CLI; one module per group (see ``optical_viz.cli``)."""
