"""fer_keras: the helper package of the fer-keras course kit (facial expression recognition, Keras 3).

Modules, one per stage: config, data, augment, layers, models, training, evaluation, experiment,
explain, compress, apply, modelfile, flops, viz, checks, cli. Import them explicitly
(`from fer_keras import data`); importing the package itself does not import Keras or TensorFlow.
"""

import logging

from fer_keras import config as _config

__version__ = "0.1.0"

# Notebooks build and evaluate many models in one process; TensorFlow then warns that each new
# predict function is a "retracing". It is expected here and only noise for students.
logging.getLogger("tensorflow").addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())

# Training speed on a CPU: keep freed memory in the process (config.tune_allocator; measured 2x on speed_cnn).
_config.tune_allocator()
