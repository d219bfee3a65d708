"""The one input validator (hgq_rewrite.inputs): one error class, one line naming the input and the fix,
used by trace_minmax, finetune, check_bit_exact and the command line."""

import keras
import numpy as np
import pytest

import hgq_rewrite as hr
from hgq_rewrite.cli import main
from hgq_rewrite.inputs import InputDataError, as_arrays, model_inputs, pack
from hgq_rewrite.proxy import check_bit_exact


def two_input_model():
    a, b = keras.Input((3,), name="a"), keras.Input((2, 2), name="b")
    return keras.Model([a, b], keras.layers.Concatenate()([a, keras.layers.Flatten()(b)]))


def good():
    return [np.zeros((5, 3), "float32"), np.ones((5, 2, 2), "float32")]


@pytest.mark.parametrize(
    "data, fragment",
    [
        (lambda: good()[:1], "the model has 2 input(s) but x has 1 array(s); pass one array per model input"),
        (lambda: [good()[0], np.zeros((5, 3))], "input 1 expects samples of shape (2, 2), got (3,) (x[1] of shape "
                                                 "(5, 3)); pass data shaped like the model input 'b'"),
        (lambda: [good()[0], np.full((5, 2, 2), np.nan)], "x[1] contains NaN or inf values; remove or replace them"),
        (lambda: [good()[0][:0], good()[1][:0]], "x[0] is empty: no samples (shape (0, 3))"),
        (lambda: [good()[0], good()[1][:4]], "different numbers of samples [5, 4]"),
        (lambda: [good()[0], np.array([["a"] * 4] * 5).reshape(5, 2, 2)], "x[1] is not numeric (dtype <U1)"),
        (lambda: [good()[0], None], "x[1] is None; pass a numpy array"),
        (lambda: [good()[0], (v for v in good()[1])], "x[1] is a generator; pass numpy arrays (one per model input)"),
        (lambda: [], "x is empty; pass one array per model input"),
    ],
)
def test_each_error_is_one_line_naming_the_input_and_the_fix(data, fragment):
    arrays = data()
    before = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arrays]
    with pytest.raises(InputDataError) as err:
        model_inputs(two_input_model(), arrays, "x", "caller")
    msg = str(err.value)
    assert msg.startswith("caller: ") and fragment in msg and "\n" not in msg, msg
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    for a, b in zip(arrays, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)  # nothing the user passed is changed


def test_numbered_names_float32_range_and_pack():
    with pytest.raises(InputDataError, match=r"^trace_minmax: calibration data 0 holds values beyond float32's range"):
        as_arrays(np.full((2, 3), 1e300), "calibration data", "trace_minmax", numbered=True, float32=True)
    arrays = model_inputs(two_input_model(), good(), "x", "caller")
    assert [a.shape for a in arrays] == [(5, 3), (5, 2, 2)]
    assert pack(arrays[:1]) is arrays[0] and pack(arrays) == arrays


def test_the_four_users_raise_the_same_error():
    model = hr.quantize(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    bad = np.zeros((4, 5), "float32")
    fragment = "input 0 expects samples of shape (3,), got (5,)"
    for call in (lambda: hr.trace_minmax(model, bad),
                 lambda: hr.finetune(model, bad, np.zeros(4, "int64"), epochs=1, verbose=0)):
        with pytest.raises(InputDataError) as err:
            call()
        assert fragment in str(err.value)
    hr.trace_minmax(model, np.zeros((4, 3), "float32"))
    proxy = hr.to_proxy_model(model)
    with pytest.raises(InputDataError, match=r"^check_bit_exact: " + fragment.replace("(", r"\(").replace(")", r"\)")):
        check_bit_exact(proxy, bad)


def test_the_command_line_names_the_file(tmp_path, capsys):
    model = hr.quantize(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    path = str(tmp_path / "q.keras")
    model.save(path)
    data = str(tmp_path / "calib.npz")
    np.savez(data, x=np.zeros((4, 5), "float32"))
    assert main(["report", path, "--calib", data, "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"hgq-rewrite: error: {data}: input 0 expects samples of shape (3,), got (5,) (calibration data "
                   f"of shape (4, 5)); pass data shaped like the model input '{model.inputs[0].name}'.")
