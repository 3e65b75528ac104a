"""FasterRCNN.without_mtl(): the detector alone (mtl.train_every_n_steps' detector-only steps)."""
import test_mtl_integration as ti  # same folder

MTL_KEYS = ('Loss/MTL/window_loss', 'Loss/MTL/closeness_loss', 'Loss/MTL/foreground_loss',
            'Loss/MTL/refined_classification_loss')


def test_without_mtl_runs_the_detector_alone_and_restores_the_heads():
    tasks = ti.ALL_TASKS
    model = ti.build(tasks)
    images, boxes, classes = ti.synthetic_images(2)
    config = ti.model_config(tasks).mtl
    with model.without_mtl():
        predictions, losses, _ = ti.predict_and_loss(model, images, boxes, classes, config)
    assert not [key for key in predictions if key.startswith('mtl_')]
    assert not [key for key in losses if key.startswith('Loss/MTL/')]
    predictions, losses, _ = ti.predict_and_loss(model, images, boxes, classes, config)
    assert 'mtl_refined_class_logits' in predictions
    assert set(MTL_KEYS) <= set(losses)
