"""Knowledge distillation from a trained teacher, usually the dense twin, while fine-tuning TREC.

    loss = (1 - weight) * CE(labels, student) + weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015.) The T^2 factor
keeps the soft term's gradients on the hard term's scale whatever T is. The twin's soft outputs
say which wrong classes are close, which is what a net that lost some resolution to clustering
needs to relearn; docs/BENCHMARKS.md measures what it buys.
"""

from __future__ import annotations

import keras
from keras import ops


def distillation_loss(teacher_logits, student_logits, temperature: float):
    """Batch mean of T^2 * KL(softmax(teacher / T) || softmax(student / T))."""
    t = float(temperature)
    log_p = ops.log_softmax(ops.cast(teacher_logits, "float32") / t, axis=-1)
    log_q = ops.log_softmax(ops.cast(student_logits, "float32") / t, axis=-1)
    return ops.mean(ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)) * (t * t)


class Distiller(keras.Model):
    """Trains ``student`` against labels and a frozen ``teacher``; predicts with the student alone.

    Only for ``fit``: save the student (``self.student``), not this wrapper.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, weight: float = 0.5,
                 temperature: float = 4.0, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{student.name}_distilled"), **kwargs)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"distillation weight must lie in [0, 1], got {weight}")
        if not temperature > 0.0:
            raise ValueError(f"distillation temperature must be positive, got {temperature}")
        if tuple(teacher.output_shape[1:]) != tuple(student.output_shape[1:]):
            raise ValueError(f"teacher {teacher.name!r} outputs {teacher.output_shape[1:]} but the student "
                             f"{student.name!r} outputs {student.output_shape[1:]}: distil from a model of "
                             "the same task (e.g. the dense twin)")
        if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
            raise ValueError(f"teacher {teacher.name!r} takes {teacher.input_shape[1:]} but the student "
                             f"{student.name!r} takes {student.input_shape[1:]}")
        teacher.trainable = False
        self.student = student
        self.teacher = teacher
        self.weight = float(weight)
        self.temperature = float(temperature)

    def call(self, x, training=False):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if self.weight == 0.0:
            return hard
        soft = distillation_loss(self.teacher(x, training=False), y_pred, self.temperature)
        return (1.0 - self.weight) * hard + self.weight * soft
