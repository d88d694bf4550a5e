"""The Keras 3 (TensorFlow) backend: lower.py maps each IR class to an expression over Keras and library.py
(framework-free, so the support matrix needs no TensorFlow); session.py builds and trains the model. Importing
library.py or session.py imports TensorFlow, quietly (quiet.py)."""
