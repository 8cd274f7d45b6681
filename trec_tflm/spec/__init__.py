"""The op's specification: its constants and options, the int8 reference, the one .tflite reader."""
