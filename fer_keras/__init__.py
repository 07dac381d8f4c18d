"""fer_keras: the helper package of the fer-keras course kit (facial expression recognition, Keras 3).

Modules, one per stage: config, data, augment, layers, models, training, evaluation, modelfile,
viz, checks, cli. Import them explicitly (`from fer_keras import data`); importing the package
itself does not import Keras or TensorFlow.
"""

__version__ = "0.1.0"
