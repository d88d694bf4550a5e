"""The Keras 3 (TensorFlow) backend: Keras layers and optimizers, dlc's weights, batches and dropout masks."""
