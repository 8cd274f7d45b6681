"""Keras model -> int8 .tflite with TREC_CONV_2D ops, and what a .tflite holds."""
