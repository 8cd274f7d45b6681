"""Keras side: TRECConv2D, its tensor primitives and fused ops, the model zoo, training."""
