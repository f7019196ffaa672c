"""napari widgets: gather inputs, call the core (in a worker when slow), show results."""
