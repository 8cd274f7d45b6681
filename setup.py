from setuptools import find_packages, setup

setup(
    name="trec-tflm",
    version="0.1.0",
    description="TREC convolution: train in Keras 3, deploy int8 with TensorFlow Lite Micro on STM32",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["trec_tflm", "trec_tflm.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "tensorflow==2.21.0",
        "flatbuffers>=24.3",
        "pyserial>=3.5",
    ],
    extras_require={
        "tflm": ["tflite-micro==0.dev20260203175027"],
        # the MLPerf Tiny runner (mlcommons/tiny benchmark/runner) that tests/test_mlperf_runner.py drives
        "dev": ["pytest>=8", "tflite-micro==0.dev20260203175027", "ai-edge-litert",
                "pyserial>=3.5", "pyyaml>=6", "numpy>=1.26", "scikit-learn>=1.3", "matplotlib>=3.7", "pyusb>=1.2"],
        # trec-tflm bench-kernels feeds first layers real photographs (scikit-image's samples)
        "bench": ["scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["trec-tflm=trec_tflm.cli:main"]},
    package_data={"trec_tflm.train_ops": ["*.cc"]},
)
