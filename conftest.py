"""Repository-wide pytest set-up: notebooks run in smoke mode (bundled sample, 1-2 epochs) under nbval,
and TensorFlow's C++ info logs are silenced. Kernels started by nbval inherit these variables."""

import os

os.environ.setdefault("FER_MODE", "smoke")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
