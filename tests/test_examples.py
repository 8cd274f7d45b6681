"""examples/train_model.py: the original TREC scripts' flags become a trec-tflm train call."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("train_model", ROOT / "examples" / "train_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_flags_translate_to_train_arguments():
    argv = _load().translate(["--model_name=SqueezeNet", "--checkpoint_path=ck", "--dataset_path=/data/c10",
                              "--trec=0,3,6", "--L=9,16,16", "--H=6,6,6", "--epochs=2"])
    assert argv[:2] == ["train", "--model"] and argv[2] == "squeezenet"
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs["--dataset"] == "cifar10" and pairs["--dataset-path"] == "/data/c10"
    assert pairs["--checkpoint-path"] == "ck" and pairs["--trec"] == "0,3,6"
    assert pairs["--L"] == "9,16,16" and pairs["--H"] == "6,6,6" and pairs["--epochs"] == "2"
    assert "--augment" in argv  # CIFAR-10 training uses flips and shifts


def test_translated_arguments_parse_with_the_real_cli():
    from trec_tflm.cli import build_parser

    argv = _load().translate(["--model_name=CifarNet", "--checkpoint_path=ck", "--dataset=fashion_mnist",
                              "--trec=0,1", "--L=15,64", "--H=6,6"])
    args = build_parser().parse_args(argv)
    assert (args.model, args.dataset, args.trec, args.sub_vector_length, args.hash_bits) == \
        ("cifarnet", "fashion_mnist", [0, 1], [15, 64], [6, 6])


def test_unknown_model_name_is_refused(capsys):
    with pytest.raises(SystemExit):
        _load().translate(["--model_name=ResNet", "--checkpoint_path=ck"])
    assert "unknown --model_name 'ResNet'" in capsys.readouterr().err


def test_template_script_is_executable_and_uses_the_example():
    script = ROOT / "examples" / "scripts" / "train_squeeze_on_cifar10_template.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "train_model.py" in text and "--model_name=SqueezeNet" in text


def _run_with_fake_trec_tflm(tmp_path, script_name):
    """Run an accuracy script with a fake trec-tflm that records its arguments and leaves what a
    finished training run leaves; returns (the recorded calls, a function that reruns the script)."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "trec-tflm"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nwhile [ "$1" != "--checkpoint-path" ]; do shift; done\n'
                    'mkdir -p "$2" && echo \'{"test": {}}\' > "$2/history.json"\necho "test accuracy: 0.5"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = tmp_path / "runs"
    script = ROOT / "examples" / "benchmarks" / script_name

    def run():
        subprocess.run(["sh", str(script), str(out)], check=True, env=env, capture_output=True, text=True)
        return calls.read_text().splitlines()

    return run(), run, out


def test_accuracy_benchmark_script_runs_valid_train_commands(tmp_path):
    """examples/benchmarks/accuracy.sh (the docs/BENCHMARKS.md accuracy runs): every trec-tflm call
    parses with the real CLI, TREC nets start from their own twin, and finished runs are skipped."""
    import shlex

    from trec_tflm.cli import build_parser

    lines, rerun, _ = _run_with_fake_trec_tflm(tmp_path, "accuracy.sh")
    assert len(lines) == 10
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line))
        assert args.command == "train"
        if args.checkpoint_path.endswith("_trec"):
            assert args.init_from == args.checkpoint_path[:-len("_trec")] + "_dense/best.keras"
    assert len(rerun()) == 10  # nothing rerun


def test_work_model_bound_hand_checked():
    from trec_tflm.bench.kernels import work_model_bound

    # Cout 64, H 6, rc 0.1, L 64: 64 / (6 + 1 + 6.4 + 1) = 4.444...
    assert work_model_bound(64, 6, 0.1, 64) == pytest.approx(64 / 14.4)
    # every row its own cluster: never better than dense
    assert work_model_bound(32, 4, 1.0, 8) < 1.0


def test_long_accuracy_script_runs_valid_train_commands(tmp_path):
    """examples/benchmarks/accuracy_long.sh: every call parses, every fine-tuned net starts from the
    long twin (and distils from it where asked), and finished runs are skipped."""
    import shlex

    from trec_tflm.cli import build_parser

    lines, rerun, out = _run_with_fake_trec_tflm(tmp_path, "accuracy_long.sh")
    parsed = [build_parser().parse_args(shlex.split(line)) for line in lines]
    assert len(parsed) == 6 and all(a.command == "train" for a in parsed)
    twin = str(out / "cmsisnn_cifar10_dense" / "best.keras")
    assert parsed[0].trec == [] and parsed[0].epochs == 10 and parsed[0].train_limit is None
    for a in parsed[1:]:
        assert a.init_from == twin and a.epochs == 3 and a.train_limit is None
        assert a.distill_from == (twin if a.checkpoint_path.endswith("_kd") else None)
    assert len(rerun()) == 6  # nothing rerun


def test_seeds_accuracy_script_runs_valid_train_commands(tmp_path):
    """examples/benchmarks/accuracy_seeds.sh: refused without accuracy.sh's twin; then 5 calls that
    parse, each fine-tuned from that twin with its own seed, H = 8 (L 15, 32, 16) or the builder's
    defaults, each into a directory bench-kernels --models-dir takes; finished runs are skipped."""
    import shlex
    import subprocess

    from trec_tflm.cli import build_parser

    (tmp_path / "none").mkdir()
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _run_with_fake_trec_tflm(tmp_path / "none", "accuracy_seeds.sh")
    assert "run examples/benchmarks/accuracy.sh" in refused.value.stderr
    twin = tmp_path / "runs" / "cmsisnn_cifar10_dense" / "best.keras"
    twin.parent.mkdir(parents=True)
    twin.write_text("")
    lines, rerun, out = _run_with_fake_trec_tflm(tmp_path, "accuracy_seeds.sh")
    parsed = [build_parser().parse_args(shlex.split(line)) for line in lines]
    got = {(a.seed, tuple(a.hash_bits or ())) for a in parsed}
    assert got == {(0, (8, 8, 8)), (1, ()), (1, (8, 8, 8)), (2, ()), (2, (8, 8, 8))}
    for a in parsed:
        assert a.command == "train" and a.init_from == str(twin) and a.epochs == 2
        assert a.sub_vector_length == ([15, 32, 16] if a.hash_bits else None)
        setting = "h8" if a.hash_bits else "default"
        assert a.checkpoint_path == f"{out}_seeds/{setting}_s{a.seed}/cmsisnn_cifar10_trec"
    assert len(rerun()) == 5  # nothing rerun
