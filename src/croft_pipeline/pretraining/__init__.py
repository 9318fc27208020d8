"""Pretraining the offline default CLIP: the locked-towers recipe (:mod:`locked`, on the shipped
trunk of :mod:`trunk`), the from-scratch recipe and the shared contrastive steps
(:mod:`contrastive`), the checkpoint and its stamp (:mod:`checkpoint`), and
:func:`default_model.ensure_checkpoint`, which the pretrain pipeline calls."""
