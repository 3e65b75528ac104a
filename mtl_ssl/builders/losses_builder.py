"""ClassificationLoss proto -> per-box loss fn(logits, targets, weights) -> [B, N]
(the second-stage classification loss, OD API build_faster_rcnn_classification_loss:
weighted_softmax when unset)."""
import functools

from mtl_ssl.core import losses

_SUPPORTED = ('weighted_softmax', 'weighted_logits_softmax', 'weighted_sigmoid',
              'weighted_sigmoid_focal')


def build_faster_rcnn_classification_loss(loss_config):
  which = loss_config.WhichOneof('classification_loss') if loss_config else None
  if which is None:
    return losses.weighted_softmax_cross_entropy
  if which in ('weighted_softmax', 'weighted_logits_softmax'):
    cfg = getattr(loss_config, which)
    if cfg.logit_scale <= 0:
      raise ValueError('second_stage_classification_loss.%s.logit_scale must be '
                       'positive, got %s' % (which, cfg.logit_scale))
    if which == 'weighted_logits_softmax':
      raise ValueError('second_stage_classification_loss.weighted_logits_softmax '
                       '(targets given as logits) is not supported')
    return functools.partial(losses.weighted_softmax_cross_entropy,
                             logit_scale=cfg.logit_scale)
  if which == 'weighted_sigmoid':
    return losses.weighted_sigmoid_cross_entropy
  if which == 'weighted_sigmoid_focal':
    cfg = loss_config.weighted_sigmoid_focal
    alpha = cfg.alpha if cfg.HasField('alpha') else None
    return functools.partial(losses.sigmoid_focal_cross_entropy,
                             gamma=cfg.gamma, alpha=alpha)
  raise ValueError('second_stage_classification_loss: %s is not supported; use '
                   'one of %s' % (which, ', '.join(_SUPPORTED[:1] + _SUPPORTED[2:])))
