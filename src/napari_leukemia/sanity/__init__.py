"""Sanity checks: does a call depend on the cell, does a map depend on the model?

`context_check` (module `context`) moves the selected cell into other surroundings and
classifies it again; `randomization_check` (module `randomization`) re-initialises the
model's layers and measures how much an attribution map changes. Importing this
package imports neither TensorFlow nor Qt.
"""
