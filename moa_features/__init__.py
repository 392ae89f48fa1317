"""moa-features: mechanism-of-action prediction from multi-channel cell images.

The pipeline, one module (or subpackage) per stage, data flowing one way::

    datasets -> extract (features/) -> annotate -> train (models/) -> report (reports/) -> app

Importing the package is cheap: it imports no deep-learning framework. The CNN code
(``moa_features.models.cnn``) imports Keras lazily, on the JAX backend.
"""

__version__ = "0.1.0"
