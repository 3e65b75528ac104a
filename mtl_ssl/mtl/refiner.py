"""Context refiner (method.md "Refinement via context"; original `predict_with_mtl_results`).

r = z + FC(stop_gradient(concat[z, window logits at the L context boxes, closeness logits])),
with optional hidden FC layers (ReLU, as wide as the input) each followed by dropout, and the
residual optional (refine_residue). `refine_dropout_rate` is a KEEP probability (the original
passed it to slim.dropout as keep_prob; default 1.0 = no dropout), used only after hidden layers.
stop_gradient_for_prediction_org also cuts the residual path, so the refined loss then trains
only the refiner.
"""
import tensorflow as tf
import tf_keras

from mtl_ssl.builders import hyperparams_builder


class ContextRefiner(tf_keras.layers.Layer):
    """list [z [B, P, C+1], *sources [B, P, d_i]] -> refined logits [B, P, C+1]."""

    def __init__(self, num_classes, input_width, mtl_config, **kwargs):
        super().__init__(**kwargs)
        num_layers = int(mtl_config.refine_num_fc_layers)
        keep = float(mtl_config.refine_dropout_rate)
        if num_layers < 0:
            raise ValueError(f'model.mtl.refine_num_fc_layers must be >= 0, got {num_layers}')
        if not 0.0 < keep <= 1.0:
            raise ValueError(f'model.mtl.refine_dropout_rate is a keep probability in (0, 1], '
                             f'got {keep}')
        hyperparams = None
        if hasattr(mtl_config, 'HasField') and mtl_config.HasField('refiner_fc_hyperparams'):
            hyperparams = mtl_config.refiner_fc_hyperparams
        hyperparams = hyperparams_builder.KerasLayerHyperparams(
            hyperparams, 'model.mtl.refiner_fc_hyperparams')
        self._residual = bool(mtl_config.refine_residue)
        self._stop_gradient_org = bool(mtl_config.stop_gradient_for_prediction_org)
        self.hidden = []
        self.dropouts = []
        for i in range(num_layers):
            self.hidden.append(tf_keras.layers.Dense(
                int(input_width), activation='relu', name=f'fc{i + 1}',
                **hyperparams.params(use_bias=True)))
            self.dropouts.append(tf_keras.layers.Dropout(1.0 - keep, name=f'dropout{i + 1}')
                                 if keep < 1.0 else None)
        self.output_layer = tf_keras.layers.Dense(
            int(num_classes) + 1, name=f'fc{num_layers + 1}',
            **hyperparams.params(use_bias=True))

    def passthrough(self, main_logits):
        """What the refiner passes of z unchanged (its residual path, with the same gradient):
        the refined logits of proposals it is not run on (refine_top_k)."""
        if self._residual and not self._stop_gradient_org:
            return main_logits
        return tf.stop_gradient(main_logits)

    def call(self, inputs, training=None):
        main_logits = inputs[0]
        if self._stop_gradient_org:
            main_logits = tf.stop_gradient(main_logits)
        net = tf.stop_gradient(tf.concat([main_logits] + list(inputs[1:]), -1))
        for dense, dropout in zip(self.hidden, self.dropouts):
            net = dense(net)
            if dropout is not None:
                net = dropout(net, training=training)
        refined = self.output_layer(net)
        if self._residual:
            refined = refined + main_logits
        return refined
