"""`dlc check`'s parameter counts equal Keras' own count_params() for a model built by the keras backend
session, for specs using every lowered layer kind (issue 4; transposed, depthwise and separable convolutions,
upsampling and Bidirectional added since): the IR's shape rules and weight shapes are Keras'."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("tensorflow")

from dlc.compiler import compile_text

SPECS = {
    "sequence": """
model seq {
  seed: 1
  data { source: digits }
  input: (64)
  layers {
    Reshape((16, 4))
    Conv1D(6, 3, strides=2, padding=same, activation=gelu)
    MaxPool1D(2)
    Conv1D(6, 2, activation=hard_sigmoid)
    AvgPool1D(2, strides=1, padding=same)
    LayerNorm()
    PReLU()
    LeakyReLU()
    ELU(0.5)
    GlobalMaxPool1D()
    Maxout(7, pieces=3, activation=selu)
    Activation(swish)
    Reshape((7, 1))
    GlobalAvgPool1D()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
    "image": """
model img {
  seed: 1
  data { source: digits }
  input: (8, 8, 1)
  layers {
    Conv2D(4, (3, 3), padding=same, activation=softplus)
    AvgPool2D((3, 3), strides=(2, 2), padding=same)
    Activation(softsign)
    Conv2D(5, (2, 2), activation=relu6)
    GlobalAvgPool2D()
    Reshape((1, 1, 5))
    GlobalMaxPool2D()
    Softmax()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
    "tokens": """
model tok {
  seed: 1
  data { source: digits
         normalize: none }
  input: (64)
  layers {
    Embedding(17, 5)
    LayerNorm(center=false)
    Flatten()
    Dense(8, activation=leaky_relu(alpha=0.1))
    Activation(elu(alpha=2.0))
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
    "transposed": """
model tr {
  seed: 1
  data { source: digits }
  input: (8, 8, 1)
  layers {
    Conv2D(3, (2, 2))
    Conv2DTranspose(4, (3, 3), strides=(2, 2), padding=same, activation=relu)
    Conv2DTranspose(2, (3, 3), strides=(2, 2), use_bias=false)
    Conv2D(2, (5, 5), strides=(5, 5))
    Convolution2DTranspose(3, (2, 3), strides=(3, 2), padding=same)
    Conv2DTranspose(2, 2, strides=3, output_padding=1)
    Conv2DTranspose(2, (3, 3), strides=(2, 2), padding=same, output_padding=1)
    Conv2DTranspose(1, (4, 4), strides=(2, 2), padding=same, output_padding=(1, 1))
    GlobalAvgPool2D()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
    "depthwise": """
model dw {
  seed: 1
  data { source: digits }
  input: (8, 8, 1)
  layers {
    Conv2D(3, (2, 2))
    DepthwiseConv2D((3, 3), strides=(2, 2), padding=same, depth_multiplier=2)
    DepthwiseConv2D(2, use_bias=false)
    DepthwiseConv2D((1, 2), depth_multiplier=3, padding=same)
    SeparableConv2D(5, (3, 3), padding=same)
    SeparableConv2D(4, (2, 2), strides=(2, 2), depth_multiplier=2, use_bias=false)
    SeparableConvolution2D(3, 1, depth_multiplier=3)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
    "upsampling": """
model up {
  seed: 1
  data { source: digits }
  input: (8, 8, 1)
  layers {
    Conv2D(2, (3, 3), strides=(2, 2))
    UpSampling2D()
    UpSampling2D((2, 3), interpolation=bilinear)
    Conv2D(2, (3, 3), strides=(3, 3))
    UpSampling2D(2, interpolation=nearest)
    Flatten()
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
    "bidirectional": """
model bi {
  seed: 1
  data { source: digits }
  input: (8, 8)
  layers {
    Bidirectional(LSTM(5, return_sequences=true))
    Bidirectional(GRU(4, return_sequences=true), merge_mode=sum)
    Bidirectional(SimpleRNN(3, return_sequences=true, use_bias=false), ave)
    Bidirectional(GRU(3, return_sequences=true, use_bias=false), merge_mode=mul)
    Bidirectional(LSTM(6, use_bias=false), merge_mode=concat)
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  optimizer: SGD()
}
""",
}


@pytest.mark.parametrize("name", list(SPECS))
def test_param_counts_equal_keras_count_params(name):
    from dlc.backends import session_class

    spec = compile_text(SPECS[name]).raise_for_errors()
    session = session_class("keras")(spec, dtype="float32", device="cpu")
    model = session.model
    trainable, non_trainable = spec.param_counts()
    assert model.count_params() == trainable + non_trainable
    assert sum(int(v.numpy().size) for v in model.trainable_weights) == trainable
    for info in spec.walk():
        kl = session.klayers.get(info.layer.name)
        if kl is not None:
            assert tuple(kl.output.shape[1:]) == tuple(info.out_shape), info.layer
            assert kl.count_params() == sum(math.prod(w.shape) for w in info.weights), info.layer
