"""Shared test settings: quiet TensorFlow, deterministic seeds, and the test tiers (helpers/)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import helpers  # noqa: E402
import pytest  # noqa: E402

STRICT = os.environ.get("TREC_TFLM_REQUIRE_TIERS") == "1"
_tier_results: dict[str, dict[str, int]] = {t: {} for t in helpers.TIERS}
_tier_seconds: dict[str, float] = {t: 0.0 for t in [*helpers.TIERS, "none"]}
_none_results: dict[str, int] = {}
_tier_reasons: dict[str, str] = {}
_strict_skips: list[str] = []


def pytest_configure(config):
    for name, text in {**helpers.TIERS, **helpers.LABELS}.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _tiers(item) -> list[str]:
    return [t for t in helpers.TIERS if item.get_closest_marker(t) is not None]


_missing_cache: dict[str, str | None] = {}
_unusable_cache: dict[str, str | None] = {}


def pytest_runtest_setup(item):
    for tier in _tiers(item):
        if tier not in _missing_cache:  # once per run: the tree check runs git
            _missing_cache[tier] = helpers.missing(tier)
            _unusable_cache[tier] = None if _missing_cache[tier] else helpers.unusable(tier)
        reason = _missing_cache[tier]
        if reason:
            _tier_reasons.setdefault(tier, reason)
            pytest.skip(f"[{tier} tier] {reason}")
        broken = _unusable_cache[tier]
        if broken:
            pytest.fail(f"[{tier} tier] {broken}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    tiers = _tiers(item)
    for tier in tiers or ["none"]:
        _tier_seconds[tier] += rep.duration  # setup, call and teardown (module fixtures land on the first test)
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        for counts in [_tier_results[t] for t in tiers] or [_none_results]:
            counts[rep.outcome] = counts.get(rep.outcome, 0) + 1
    # CI has every tier configured: a skip there is a tier that silently did not run.
    if STRICT and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        _strict_skips.append(f"{item.nodeid}: {reason}")
        rep.outcome = "failed"
        rep.longrepr = (f"skipped with TREC_TFLM_REQUIRE_TIERS=1 (CI runs every tier): {reason}")


def pytest_terminal_summary(terminalreporter):
    """One line per tier: ran, or skipped and what to set."""
    tr = terminalreporter
    tr.section("test tiers (a test of several tiers counts in each)")
    for tier, counts in _tier_results.items():
        total = sum(counts.values())
        if total == 0:
            tr.write_line(f"tier {tier}: no test selected")
        elif counts.get("skipped"):
            tr.write_line(f"tier {tier}: SKIPPED {counts['skipped']} of {total} tests - "
                          f"{_tier_reasons.get(tier, 'see the skip reasons above')}")
        else:
            detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            tr.write_line(f"tier {tier}: ran {total} tests ({detail}) in {_tier_seconds[tier]:.0f} s")
    if _none_results:
        detail = ", ".join(f"{n} {k}" for k, n in sorted(_none_results.items()))
        tr.write_line(f"no tier: {sum(_none_results.values())} tests ({detail}) in {_tier_seconds['none']:.0f} s")
    if STRICT and _strict_skips:
        tr.write_line(f"{len(_strict_skips)} skipped tests failed under TREC_TFLM_REQUIRE_TIERS=1")


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def fashion():
    """Real Fashion-MNIST (Debian package dataset-fashion-mnist, or Keras' cache)."""
    from trec_tflm.data import DatasetError, load_fashion_mnist

    try:
        return load_fashion_mnist()
    except DatasetError as exc:
        pytest.skip(str(exc))
