"""Config loading, validation and the precedence of resolve_config."""

import json
import warnings

import keras
import pytest
from keras import layers as L
from test_rewrite_models import fingerprint, jet_tagger, nested_shared

from hgq_rewrite.rewrite import ConfigError, explain, quantize
from hgq_rewrite.rewrite.policy import load_config, resolve_config

DENSE = ["Dense", "Layer", "Operation"]


def resolve(path, config, classes=DENSE, beta=None):
    return resolve_config(path, classes, load_config(config), beta)


def test_library_defaults():
    r = resolve("d", None)
    assert r.values["beta"] == 0.0 and r.sources["beta"] == "default"
    assert r.values["parallel_factor"] is None
    assert r.values["kernel"]["init_bw"] == 4.0 and r.sources["kernel.init_bw"] == "default"
    assert not r.keep_float


def test_levels_in_order_and_field_merge():
    cfg = {
        "defaults": {"beta": 1.0, "kernel": {"init_bw": 6}},
        "types": {"Dense": {"beta": 2.0, "kernel": {"rounding": "TRN"}}},
        "patterns": {"^enc": {"parallel_factor": 4}, "enc": {"beta": 9.0}},
        "names": {"enc/d": {"activation": {"init_bw": 10}}},
    }
    r = resolve("enc/d", cfg, beta=0.5)
    v, s = r.values, r.sources
    assert (v["beta"], s["beta"]) == (2.0, "types:Dense")  # types beat beta= and defaults
    assert (v["kernel"]["init_bw"], s["kernel.init_bw"]) == (6, "defaults")  # kept from a lower level
    assert (v["kernel"]["rounding"], s["kernel.rounding"]) == ("TRN", "types:Dense")
    assert (v["parallel_factor"], s["parallel_factor"]) == (4, "patterns:^enc")  # first pattern only
    assert (v["activation"]["init_bw"], s["activation.init_bw"]) == (10, "names:enc/d")
    assert r.matched == ["defaults", "beta=", "types:Dense", "patterns:^enc", "names:enc/d"]


def test_beta_argument_beats_config_defaults():
    r = resolve("d", {"defaults": {"beta": 1.0}}, beta=0.25)
    assert (r.values["beta"], r.sources["beta"]) == (0.25, "beta=")


def test_subclass_type_beats_base_type():
    cfg = {"types": {"Dense": {"beta": 1.0, "parallel_factor": 2}, "MyDense": {"beta": 3.0}}}
    r = resolve("d", cfg, classes=["MyDense", "Dense", "Layer"])
    assert r.values["beta"] == 3.0 and r.values["parallel_factor"] == 2


def test_names_precedence_nested():
    cfg = {"names": {"enc": {"beta": 1.0, "parallel_factor": 3}, "d": {"beta": 2.0}, "enc/d": {"beta": 4.0}}}
    r = resolve("enc/d", cfg)
    assert r.values["beta"] == 4.0 and r.sources["beta"] == "names:enc/d"
    assert r.values["parallel_factor"] == 3 and r.sources["parallel_factor"] == "names:enc"
    r2 = resolve("enc/other", cfg)
    assert r2.values["beta"] == 1.0


def test_none_keeps_float_and_more_specific_dict_requantizes():
    cfg = {"types": {"Dense": None}}
    assert resolve("d", cfg).keep_float and resolve("d", cfg).float_rule == "types:Dense"
    cfg = {"patterns": {"^enc/": None}, "names": {"enc/d": {"beta": 1.0}}}
    assert not resolve("enc/d", cfg).keep_float
    assert resolve("enc/e", cfg).keep_float
    cfg = {"defaults": {"beta": 1.0}, "names": {"enc": None}}
    r = resolve("enc/d", cfg)
    assert r.keep_float and r.float_rule == "names:enc"


def test_unknown_section_field_and_values_listed_together():
    bad = {
        "type": {},
        "types": {"Dense": {"betta": 1, "kernel": {"init_bww": 3}}},
        "names": {"x": {"beta": -1, "parallel_factor": 0}},
        "patterns": {"(": {}},
    }
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    for needle in ["'type'", "did you mean 'types'", "'betta'", "did you mean 'beta'", "init_bww",
                   "beta must be a finite number >= 0", "parallel_factor must be", "invalid regular expression"]:
        assert needle in msg, needle


def test_quantizer_values_checked():
    with pytest.raises(ConfigError, match="rounding"):
        load_config({"defaults": {"kernel": {"rounding": "NEAREST"}}})
    with pytest.raises(ConfigError, match="granularity"):
        load_config({"defaults": {"activation": {"granularity": "row"}}})
    assert load_config({"defaults": {"kernel": {"granularity": [0, 1]}}}).defaults["kernel"]["granularity"] == (0, 1)


def test_rule_must_be_mapping_or_null():
    with pytest.raises(ConfigError, match="mapping of fields or null"):
        load_config({"names": {"d": 3}})
    with pytest.raises(ConfigError, match="must be a dict"):
        load_config([1, 2])


def test_yaml_and_json_files(tmp_path):
    y = tmp_path / "cfg.yaml"
    y.write_text("types:\n  Dense: {beta: 1.0e-5, kernel: {init_bw: 8}}\nnames:\n  logits: null\n")
    c = load_config(str(y))
    assert c.types["Dense"]["kernel"]["init_bw"] == 8 and c.names["logits"] is None
    j = tmp_path / "cfg.json"
    j.write_text(json.dumps({"patterns": {"^dense": {"beta": 2.0}}}))
    assert load_config(j).patterns[0][0] == "^dense"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("types: [unclosed\n")
    with pytest.raises(ConfigError, match="Cannot parse"):
        load_config(str(tmp_path / "bad.yaml"))
    # the safe loader refuses Python objects
    (tmp_path / "evil.yaml").write_text("types: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="Cannot parse"):
        load_config(str(tmp_path / "evil.yaml"))


def test_strict_lists_every_miss_with_suggestions():
    m = jet_tagger()
    cfg = {"types": {"Dens": {"beta": 1.0}}, "names": {"dense_1": None, "logit": None}, "patterns": {"^conv": None}}
    with pytest.raises(ConfigError) as e:
        quantize(m, cfg)
    msg = str(e.value)
    assert msg.count("matches no layer") == 4
    assert "'Dens'" in msg and "did you mean 'Dense'" in msg
    assert "'logit'" in msg and "'logits'" in msg
    assert "'dense_1'" in msg and "dense1" in msg


def test_not_strict_warns():
    m = jet_tagger()
    with pytest.warns(UserWarning, match="matches no layer"):
        quantize(m, {"names": {"nope": None}}, strict=False)


def test_explain_reports_misses_without_raising():
    plan = explain(jet_tagger(), {"names": {"dense_9": {"beta": 1.0}}})
    assert [(s, k) for s, k, _ in plan.unmatched] == [("names", "dense_9")]
    assert "matches no layer" in str(plan)


def test_nested_path_and_container_names_match():
    m = nested_shared()
    plan = explain(m, {"names": {"encoder/dense_1": {"beta": 3.0}, "encoder": {"parallel_factor": 2}}})
    assert not plan.unmatched
    assert plan["encoder/dense_1"].fields["beta"] == 3.0
    assert plan["encoder/dense_2"].fields["parallel_factor"] == 2
    assert plan["encoder/dense_2"].sources["parallel_factor"] == "names:encoder"


def test_config_and_model_unchanged():
    m = nested_shared()
    cfg = {"defaults": {"kernel": {"granularity": [0]}}, "types": {"Dense": {"beta": 1e-5}},
           "names": {"encoder/bn": {"beta": 1.0}}}
    before = fingerprint(m, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explain(m, cfg)
        quantize(m, cfg)
    assert fingerprint(m, cfg) == before
    assert cfg["defaults"]["kernel"]["granularity"] == [0]


def test_inserted_quantizer_configurable():
    m = keras.Sequential([keras.Input((4,), name="x"), L.Dense(2, name="d")])
    plan = explain(m, {"types": {"HQuantize": {"activation": {"init_bw": 9}}}})
    assert not plan.unmatched
    assert plan["x_quantizer"].fields["activation.init_bw"] == 9
    plan = explain(m, {"names": {"x_quantizer": None}})
    assert plan["x_quantizer"].decision == "insert"
    assert "cannot be kept float" in plan["x_quantizer"].notes[0]


def test_bad_beta_argument():
    with pytest.raises(ConfigError, match="beta must be a finite number >= 0"):
        explain(jet_tagger(), beta=-1.0)
    with pytest.raises(ConfigError, match="beta must be a finite number >= 0"):
        quantize(jet_tagger(), beta="3e-5")
