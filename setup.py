import os
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# The C sources every command needs (kernels, TFLM glue, boards, firmware app). They stay at the
# top of the repository; a wheel carries a copy in trec_tflm/_data/, where trec_tflm.paths finds it.
SOURCE_TREES = ("tflm_ops", "boards")
# Build outputs a checkout may hold beside the sources; never shipped.
SKIP_DIRS = {"build", "__pycache__"}
SKIP_SUFFIXES = (".o", ".a", ".so", ".d", ".elf", ".bin", ".map", ".pyc")


def source_files(tree):
    for dirpath, dirnames, filenames in os.walk(HERE / tree):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and not name.endswith(SKIP_SUFFIXES):
                yield (Path(dirpath) / name).relative_to(HERE)


class build_py_with_sources(build_py):
    """build_py, plus tflm_ops/ and boards/ copied to trec_tflm/_data/ (not for an editable
    install, which uses the checkout's own trees)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = Path(self.build_lib) / "trec_tflm" / "_data"
        # an in-tree build reuses build/lib: a file deleted from the trees must not survive there
        shutil.rmtree(data, ignore_errors=True)
        for tree in SOURCE_TREES:
            if not (HERE / tree).is_dir():
                raise SystemExit(f"{HERE / tree} is missing: build trec-tflm from a full checkout or its sdist")
            for rel in source_files(tree):
                dest = data / rel
                self.mkpath(str(dest.parent))
                self.copy_file(str(HERE / rel), str(dest))


setup(
    name="trec-tflm",
    version="0.1.0",
    description="TREC convolution: train in Keras 3, deploy int8 with TensorFlow Lite Micro on STM32",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
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
                "pyserial>=3.5", "pyyaml>=6", "numpy>=1.26", "scikit-learn>=1.3", "matplotlib>=3.7", "pyusb>=1.2",
                "ruff==0.17.6"],
        # trec-tflm bench-kernels feeds first layers real photographs (scikit-image's samples)
        "bench": ["scikit-image>=0.22"],
    },
    entry_points={"console_scripts": ["trec-tflm=trec_tflm.cli:console_main"]},
    package_data={"trec_tflm.training.train_ops": ["*.cc"]},
    cmdclass={"build_py": build_py_with_sources},
)
