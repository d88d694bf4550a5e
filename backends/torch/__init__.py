"""The PyTorch backend: Keras' semantics (IR) reproduced exactly with custom modules and optimizer steps."""
