"""gradient_clipping_by_norm: global norm (OD API TF2) or per variable (TF1 slim, the original)."""
import numpy as np
import tensorflow as tf

from mtl_ssl.protos import train_pb2
from mtl_ssl.training import train_loop


def _clip(gradients, per_variable, norm=5.0):
  config = train_pb2.TrainConfig(gradient_clipping_by_norm=norm,
                                 gradient_clipping_per_variable=per_variable)
  return [g.numpy() for g in train_loop.clip_gradients([tf.constant(g) for g in gradients],
                                                       config)]


def test_global_and_per_variable_clipping_hand_worked():
  gradients = [np.array([3.0, 4.0]), np.array([0.0, 12.0])]  # norms 5 and 12, global 13
  global_clip = _clip(gradients, per_variable=False)
  np.testing.assert_allclose(global_clip[0], [3 * 5 / 13, 4 * 5 / 13], rtol=1e-6)
  np.testing.assert_allclose(global_clip[1], [0, 12 * 5 / 13], rtol=1e-6)
  per_variable = _clip(gradients, per_variable=True)
  np.testing.assert_allclose(per_variable[0], [3.0, 4.0])  # norm 5: untouched
  np.testing.assert_allclose(per_variable[1], [0.0, 5.0], rtol=1e-6)


def test_no_clipping_without_a_norm():
  gradients = [np.array([30.0, 40.0])]
  np.testing.assert_array_equal(_clip(gradients, per_variable=True, norm=0.0)[0], gradients[0])
