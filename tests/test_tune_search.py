"""The tuner's search order (trec_tflm.tune.search: ladder, moves, Search), on hand-made candidates whose
rc and predicted instructions are written out here, so which setting comes next can be checked by hand."""

from __future__ import annotations

from trec_tflm.tune import search
from trec_tflm.tune.cost import Conv


def _cand(layer, length, bits, rc, instructions, dense):
    return search.LayerCandidate(layer, length, bits, rc, 1, "tables", 0, instructions, dense, 100)


def _layers():
    # "small" (dense 100): TREC saves 50 at H = 8 and only 5 more at H = 5 (below MIN_GAIN of the whole)
    small = search.LayerInfo("small", Conv(8, 8, 1, 32, 3, 3), 100.0,
                             [_cand("small", 1, b, rc, t, 100)
                              for b, rc, t in ((8, .30, 50), (7, .28, 48), (6, .26, 46), (5, .25, 45))])
    # "big" (dense 1000): 32x7 merges more rows than 32x8 but is slower (off the ladder); 96x8 merges
    # fewer rows than anything but does not pay (off the ladder)
    big = search.LayerInfo("big", Conv(8, 8, 32, 32, 3, 3), 1000.0,
                           [_cand("big", 32, 8, .40, 400, 1000), _cand("big", 32, 7, .30, 410, 1000),
                            _cand("big", 96, 7, .35, 350, 1000), _cand("big", 32, 6, .25, 300, 1000),
                            _cand("big", 32, 5, .15, 200, 1000), _cand("big", 96, 8, .60, 1200, 1000)])
    never = search.LayerInfo("never", Conv(8, 8, 32, 1, 1, 1), 10.0,
                             [_cand("never", 32, b, .5, 20, 10) for b in (8, 7, 6, 5)])
    return [small, big, never]


def test_a_ladder_runs_from_the_most_rows_kept_down_each_rung_faster():
    small, big, never = _layers()
    assert [(c.sub_vector_length, c.hash_bits) for c in search.ladder(big)] == [(32, 8), (96, 7), (32, 6), (32, 5)]
    assert [c.hash_bits for c in search.ladder(small)] == [8, 7, 6, 5]
    assert search.ladder(never) == []


def _run(accepts):
    s = search.Search(_layers(), other=10.0)
    order = []
    while (step := s.next()) is not None:
        setting, start = step
        order.append((setting.key(), setting.predicted_instructions, start.key() if start else None))
        s.answer(accepts.get(setting.key(), False))
    return order, s


def test_fastest_first_then_one_layer_at_a_time_then_one_rung_down():
    order, s = _run({"big:32x8": True, "big:32x8,small:1x8": True, "big:96x7,small:1x8": True})
    assert order == [
        ("big:32x5,small:1x5", 10 + 45 + 200 + 10, None),          # the bottom rungs; "never" stays dense
        ("big:32x8", 10 + 100 + 400 + 10, None),                   # ascent: big saves most, at its top rung
        ("big:32x8,small:1x8", 10 + 50 + 400 + 10, "big:32x8"),    # small added, from big's student
        ("big:96x7,small:1x8", 10 + 50 + 350 + 10, "big:32x8,small:1x8"),  # descent: big one rung down
        ("big:32x6,small:1x8", 10 + 50 + 300 + 10, "big:96x7,small:1x8"),  # refused: big stays there
    ]
    # small's rungs save 2-5 of ~420: under MIN_GAIN, never fine-tuned
    assert s.base.key() == "big:96x7,small:1x8" and s.frozen == {"big"}


def test_the_fastest_accepted_ends_the_search():
    order, s = _run({"big:32x5,small:1x5": True})
    assert [o[0] for o in order] == ["big:32x5,small:1x5"]
    assert s.base.key() == "big:32x5,small:1x5"


def test_a_layer_refused_in_the_ascent_stays_dense():
    order, s = _run({"small:1x8": True})
    # big alone is refused, so small starts from the input model, and is the result
    assert order[1:] == [("big:32x8", 520, None), ("small:1x8", 10 + 50 + 1000 + 10, None)]
    assert s.base.key() == "small:1x8"


def test_a_layer_whose_top_rung_does_not_fit_the_arena_enters_one_rung_down():
    s = search.Search(_layers(), other=10.0)
    order = []
    while (step := s.next()) is not None:
        setting, start = step
        order.append(setting.key())
        # big at its top rung needs more scratch than the budget: refused without a fine-tune
        s.answer(setting.key() in ("big:96x7", "big:96x7,small:1x8"), fits=setting.key() != "big:32x8")
    assert order[:4] == ["big:32x5,small:1x5", "big:32x8", "big:96x7", "big:96x7,small:1x8"]
    assert s.base.key() == "big:96x7,small:1x8"


def test_nothing_accepted_leaves_nothing_chosen():
    order, s = _run({})
    assert [o[0] for o in order] == ["big:32x5,small:1x5", "big:32x8", "small:1x8"]
    assert s.base is None


def test_nothing_pays_nothing_to_try():
    never = _layers()[2]
    s = search.Search([never], other=0.0)
    assert not s.has_candidates and s.next() is None


def test_a_layer_saving_under_min_gain_of_the_whole_stays_dense():
    # "marginal" pays (85 < 100) but saves 15 of a 1,210-instruction dense network (1.2% < MIN_GAIN)
    marginal = search.LayerInfo("marginal", Conv(4, 4, 32, 64, 3, 3), 100.0,
                                [_cand("marginal", 32, 5, .3, 85, 100)])
    s = search.Search([*_layers(), marginal], other=10.0)
    assert s.next()[0].key() == "big:32x5,small:1x5"
