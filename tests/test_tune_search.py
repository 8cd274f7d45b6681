"""The tuner's search order (trec_tflm.tune.search.Search), on hand-made candidates whose predicted
instructions are written out here, so which setting comes next can be checked by hand."""

from __future__ import annotations

from trec_tflm.tune import search
from trec_tflm.tune.cost import Conv


def _cand(layer, length, bits, instructions, dense):
    return search.LayerCandidate(layer, length, bits, 0.1, 1, "tables", 0, instructions, dense, 100)


def _layers():
    # "small": TREC saves 50 of 100 at H = 8 and only 5 more at H = 5 (below MIN_GAIN of the whole);
    # "big": 400 at H = 8, 350 at H = 7 (only at L = 96: L = 32 is slower there), 300 at H = 6, 200 at H = 5;
    # "never": TREC never pays
    small = search.LayerInfo("small", Conv(8, 8, 1, 32, 3, 3), 100.0,
                             [_cand("small", 1, b, t, 100) for b, t in ((8, 50), (7, 48), (6, 46), (5, 45))])
    big = search.LayerInfo("big", Conv(8, 8, 32, 32, 3, 3), 1000.0,
                           [_cand("big", 32, 8, 400, 1000), _cand("big", 32, 7, 410, 1000),
                            _cand("big", 96, 7, 350, 1000), _cand("big", 32, 6, 300, 1000),
                            _cand("big", 32, 5, 200, 1000)])
    never = search.LayerInfo("never", Conv(8, 8, 32, 1, 1, 1), 10.0,
                             [_cand("never", 32, b, 20, 10) for b in (8, 7, 6, 5)])
    return [small, big, never]


def _run(accepts):
    s = search.Search(_layers(), other=10.0)
    order = []
    while (step := s.next()) is not None:
        setting, start = step
        order.append((setting.key(), setting.predicted_instructions, start.key() if start else None))
        s.answer(accepts.get(setting.key(), False))
    return order, s


def test_fastest_first_then_the_safest_then_one_layer_one_h_down():
    order, s = _run({"big:32x8,small:1x8": True, "big:96x7,small:1x8": True})
    assert order == [
        ("big:32x5,small:1x5", 10 + 45 + 200 + 10, None),          # every layer at H = 5; never stays dense
        ("big:32x8,small:1x8", 10 + 50 + 400 + 10, None),          # the safest: H = 8
        ("big:96x7,small:1x8", 10 + 50 + 350 + 10, "big:32x8,small:1x8"),  # big one H down, at its faster L
        ("big:32x6,small:1x8", 10 + 50 + 300 + 10, "big:96x7,small:1x8"),  # refused: big stays at H = 7
    ]
    assert s.base.key() == "big:96x7,small:1x8" and s.frozen == {"big"}


def test_the_fastest_accepted_ends_the_search():
    order, s = _run({"big:32x5,small:1x5": True})
    assert [o[0] for o in order] == ["big:32x5,small:1x5"]
    assert s.base.key() == "big:32x5,small:1x5"


def test_when_even_the_safest_fails_layers_go_back_to_dense_least_saving_first():
    order, s = _run({"big:32x8": True})
    # small saves 50, big 600: small goes dense first, and that is accepted; then big descends
    assert [o[0] for o in order][:3] == ["big:32x5,small:1x5", "big:32x8,small:1x8", "big:32x8"]
    assert order[3][0] == "big:96x7" and order[3][2] == "big:32x8"
    assert s.base.key() == "big:32x8"


def test_nothing_accepted_leaves_nothing_chosen():
    order, s = _run({})
    assert [o[0] for o in order] == ["big:32x5,small:1x5", "big:32x8,small:1x8", "big:32x8"]
    assert s.base is None


def test_nothing_pays_nothing_to_try():
    never = _layers()[2]
    s = search.Search([never], other=0.0)
    assert not s.has_candidates and s.next() is None
