"""nni_seg: neural architecture search for semantic segmentation on Microsoft NNI.

Importing the package is cheap: submodules (which pull in torch and nni) load on demand.
"""
__version__ = "0.1.0"
