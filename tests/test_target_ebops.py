"""finetune(target_ebops=N): the beta controller, the chosen member, the not-reached message, the CLI flag."""

import math
import os

import keras
import numpy as np
import pytest

from hgq_rewrite.beta_control import AUTO_BAND, DEFAULTS, BetaController, control_step, warmup_epochs
from hgq_rewrite.cli import main
from hgq_rewrite.finetune import Front, finetune
from hgq_rewrite.layers import HDense, HQuantize


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16,), name="x")
    h = HQuantize(name="q")(inp)
    h = HDense(16, activation="relu", name="d1")(h)
    return keras.Model(inp, HDense(3, name="d2")(h), name="mlp")


def data(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype("float32")
    y = (x[:, :3].sum(1) > 0).astype("int64") + (x[:, 3] > 0.5)
    return x, y


# --------------------------------------------------------------------------- the update rule


def test_controller_raises_beta_above_target_and_lowers_it_below():
    log_b = math.log(1e-6)
    up_state, up = control_step(log_b, 2000.0, 1000.0, gain=1.0, kp=0.0)
    assert up == pytest.approx(2e-6) and up_state == pytest.approx(math.log(2e-6))
    down_state, down = control_step(log_b, 500.0, 1000.0, gain=1.0, kp=0.0, band=None)
    assert down == pytest.approx(5e-7)
    _, same = control_step(log_b, 1000.0, 1000.0)
    assert same == pytest.approx(1e-6)
    # the proportional part acts on top of the integral state; both are clipped
    _, with_kp = control_step(log_b, 2000.0, 1000.0, gain=1.0, kp=0.5)
    assert with_kp == pytest.approx(2e-6 * math.sqrt(2))
    state, top = control_step(math.log(1e-3), 1e9, 1.0, beta_max=1e-2)
    assert top == 1e-2 and state == pytest.approx(math.log(1e-2))
    _, bottom = control_step(math.log(1e-8), 0.0, 1e6, beta_min=1e-9)  # 0 EBOPs counts as 1
    assert bottom == 1e-9


def test_controller_lead_acts_on_the_error_expected_from_its_last_change():
    """EBOPs falling fast toward the target ease beta off before they cross it; without a previous
    error (the first control step) or with lead 0 the error now is used."""
    log_b = math.log(1e-6)
    falling = dict(gain=1.0, kp=0.0, band=None, previous_error=math.log(3.0))
    state, beta = control_step(log_b, 2000.0, 1000.0, lead=1.0, **falling)  # log 2 now, log 3 before
    assert state == pytest.approx(log_b + 2 * math.log(2.0) - math.log(3.0))
    assert beta == pytest.approx(1e-6 * 4 / 3)
    assert control_step(log_b, 2000.0, 1000.0, lead=0.0, **falling) == control_step(log_b, 2000.0, 1000.0,
                                                                                      gain=1.0, kp=0.0)
    first = dict(falling, previous_error=None)
    assert control_step(log_b, 2000.0, 1000.0, lead=1.0, **first)[1] == pytest.approx(2e-6)


def test_controller_below_target_lowers_beta_linearly_to_beta_min_across_the_band():
    """Under the target the penalty gives way fast: bits regrow only from the task loss."""
    log_b = math.log(1e-6)
    for under, share in ((0.05, 0.75), (0.1, 0.5), (0.15, 0.25)):
        state, beta = control_step(log_b, 1000.0 * math.exp(-under), 1000.0, gain=1.0, band=0.2)
        assert state == pytest.approx(log_b - under)  # the integral part is unchanged
        assert beta == pytest.approx(math.exp(state) * share)
    _, floor = control_step(log_b, 1000.0 * math.exp(-0.25), 1000.0, band=0.2, beta_min=1e-9)
    assert floor == 1e-9
    # above the target the band plays no part
    assert control_step(log_b, 2000.0, 1000.0, band=0.2) == control_step(log_b, 2000.0, 1000.0, band=None)


def test_band_zero_switches_the_penalty_off_under_the_target():
    """band=0: any epoch under the target gives beta 0 (not beta_min) for the next; the integral state still
    follows the error, and above the target the rule is the usual one."""
    log_b = math.log(1e-6)
    state, beta = control_step(log_b, 990.0, 1000.0, gain=1.0, band=0.0, beta_min=1e-9)
    assert beta == 0.0 and state == pytest.approx(log_b + math.log(0.99))
    assert control_step(log_b, 2000.0, 1000.0, band=0.0) == control_step(log_b, 2000.0, 1000.0, band=0.2)


def test_band_auto_is_zero_for_a_model_with_a_convolution():
    """The default band resolves per model: after an epoch under the target a model with a convolution
    (nested ones too) gets beta 0, one without gets the 0.2 band; a given band is kept."""
    from hgq_rewrite.layers import HConv2D

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    h = HQuantize(name="q")(inp)
    h = keras.layers.Flatten()(HConv2D(2, 3, name="c")(h))
    inner = keras.Model(inp, HDense(3, name="d")(h), name="inner")
    conv_model = keras.Model(inp, inner(inp), name="outer")

    def beta_after_an_epoch_under_the_target(model, **options):
        ctl = BetaController(1000.0, beta_init=1e-6, warmup=0, **options)
        ctl.set_model(model)
        ctl.params = {"epochs": 10}
        ctl.on_epoch_end(0, {"bops": 950.0})
        return ctl.beta_at(1)

    assert DEFAULTS["band"] == "auto"
    assert beta_after_an_epoch_under_the_target(conv_model) == 0.0
    dense = beta_after_an_epoch_under_the_target(mlp())
    assert dense == pytest.approx(control_step(math.log(1e-6), 950.0, 1000.0, band=AUTO_BAND)[1]) and dense > 0
    assert beta_after_an_epoch_under_the_target(conv_model, band=0.1) > 0


def test_warmup_ramp_then_control():
    assert warmup_epochs(5, 40) == 5 and warmup_epochs(5, 8) == 2 and warmup_epochs(5, 2) == 0
    ctl = BetaController(1000.0, beta_init=1e-6, beta_min=1e-9, warmup=3, kp=0.0)
    ctl.params = {"epochs": 20}
    ramp = [ctl.beta_at(e) for e in range(3)]
    assert ramp == pytest.approx([1e-9, 1e-8, 1e-7])
    ctl.on_epoch_end(2, {"bops": 4000.0})  # last warm-up epoch: control starts from beta_init
    assert ctl.beta_at(3) == pytest.approx(4e-6)
    ctl.on_epoch_end(3, {"bops": 250.0})  # far under the target: the integral falls 4x, beta drops to beta_min
    assert ctl.log_beta == pytest.approx(math.log(1e-6)) and ctl.beta_at(4) == pytest.approx(1e-9)


def test_default_warmup_is_two_epochs_then_control():
    """A rewrite starts far above a tight budget: the controller acts from the third epoch, not the sixth."""
    ctl = BetaController(1000.0, beta_init=1e-6, beta_min=1e-9, kp=0.0)
    ctl.params = {"epochs": 20}
    assert [ctl.beta_at(e) for e in range(2)] == pytest.approx([1e-9, math.sqrt(1e-9 * 1e-6)])
    ctl.on_epoch_end(1, {"bops": 4000.0})  # last warm-up epoch: control starts from beta_init
    assert ctl.beta_at(2) == pytest.approx(4e-6)
    assert warmup_epochs(DEFAULTS["warmup"], 7) == 1 and warmup_epochs(DEFAULTS["warmup"], 3) == 0


def test_controller_arguments_checked():
    for kwargs in ({"target": 0}, {"target": -5}, {"target": float("nan")},
                   {"target": 10, "beta_min": 1, "beta_max": 1e-3},
                   {"target": 10, "gain": -1}, {"target": 10, "warmup": 1.5}, {"target": 10, "band": -0.1},
                   {"target": 10, "band": "wide"}, {"target": 10, "band": True},
                   {"target": 10, "lead": -1}):
        with pytest.raises(ValueError):
            BetaController(**kwargs)
    assert set(DEFAULTS) == {"beta_init", "init_fraction", "beta_min", "beta_max", "gain", "kp", "band", "warmup",
                             "lead"}


# --------------------------------------------------------------------------- finetune


def test_reachable_target_gives_a_member_under_it():
    x, y = data()
    model = mlp()
    _, front = finetune(model, x, y, validation_data=(x[:128], y[:128]), epochs=12, batch_size=64,
                        target_ebops=11000, verbose=0)
    assert isinstance(front, Front) and front.target_ebops == 11000
    assert front.reached and front.chosen is not None and front.chosen.ebops <= 11000
    under = [e for e in front if e.ebops <= 11000]
    assert front.chosen.metric == max(e.metric for e in under)
    assert "reached" in front.message and f"epoch {front.chosen.epoch + 1}" in front.message
    assert front.chosen.logs["beta"] > 0


def test_target_counts_exact_ebops_of_the_training_inputs():
    """The budget is the exported model's EBOPs: the chosen member, traced on x, has the EBOPs it was chosen with."""
    from hgq_rewrite import trace_minmax

    x, y = data()
    model = mlp()
    _, front = finetune(model, x, y, epochs=8, batch_size=64, target_ebops=11000, verbose=0)
    assert front.reached
    front.chosen.restore(model)
    assert trace_minmax(model, x) == pytest.approx(front.chosen.ebops)


def test_unreachable_target_says_so():
    x, y = data(256)
    with pytest.warns(UserWarning, match=r"target 1 EBOPs not reached: the lowest EBOPs .*more epochs.*beta_max"):
        _, front = finetune(mlp(), x, y, epochs=2, batch_size=64, target_ebops=1, verbose=0)
    assert front.reached is False and front.chosen is None and len(front) >= 1


def test_target_and_beta_schedule_refused():
    x, y = data(64)
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="either beta .* or target_ebops"):
        finetune(model, x, y, epochs=1, beta="log:1e-7:1e-4", target_ebops=1000, verbose=0)
    with pytest.raises(ValueError, match="target_ebops must be a finite number > 0"):
        finetune(model, x, y, epochs=1, target_ebops=0, verbose=0)
    with pytest.raises(ValueError, match="beta_control only applies with target_ebops"):
        finetune(model, x, y, epochs=1, beta_control={"beta_max": 1e-3}, verbose=0)
    with pytest.raises(TypeError, match="beta_control"):
        finetune(model, x, y, epochs=1, target_ebops=1000, beta_control={"bogus": 1}, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_without_target_front_is_a_plain_list():
    x, y = data(64)
    _, front = finetune(mlp(), x, y, epochs=1, verbose=0)
    assert isinstance(front, list) and front.target_ebops is None and front.chosen is None


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_files(tmp_path):
    x, y = data()
    train = tmp_path / "train.npz"
    np.savez(train, x=x, y=y)
    qpath = tmp_path / "q.keras"
    mlp().save(qpath)
    return str(qpath), str(train), tmp_path


def test_cli_target_ebops(cli_files, capsys):
    qpath, train, tmp = cli_files
    out = str(tmp / "ft")
    assert main(["finetune", qpath, "--data", train, "--epochs", "12", "--batch-size", "64",
                 "--target-ebops", "11000", "-o", out]) == 0
    text = capsys.readouterr().out
    assert "target 11,000 EBOPs reached" in text and "chosen (best" in text
    chosen = text.strip().splitlines()[-1].split(": ")[-1]
    assert os.path.isfile(chosen)

    out2 = str(tmp / "ft2")
    assert main(["finetune", qpath, "--data", train, "--epochs", "2", "--batch-size", "64",
                 "--target-ebops", "1", "--beta-max", "1e-3", "-o", out2]) == 0
    captured = capsys.readouterr()
    assert "warning: target 1 EBOPs not reached" in captured.out
    assert "not reached" not in captured.err  # printed once, not also as a Python warning


def test_cli_target_ebops_with_beta_refused(cli_files, capsys):
    qpath, train, tmp = cli_files
    assert main(["finetune", qpath, "--data", train, "--epochs", "1", "--beta", "1e-6",
                 "--target-ebops", "100", "-o", str(tmp / "x")]) == 2
    assert "either --beta or --target-ebops" in capsys.readouterr().err
    assert main(["finetune", qpath, "--data", train, "--epochs", "1", "--beta-max", "1e-3",
                 "-o", str(tmp / "y")]) == 2
    assert "--beta-max only applies" in capsys.readouterr().err


def test_cli_lr_decay(cli_files):
    """--lr-decay cosine (the default) compiles a decaying learning rate; none a constant one."""
    qpath, train, tmp = cli_files
    for flag, decays in (("cosine", True), ("none", False)):
        out = tmp / f"lr_{flag}"
        assert main(["finetune", qpath, "--data", train, "--epochs", "1", "--lr-decay", flag, "-o", str(out)]) == 0
        rate = keras.models.load_model(out / "last.keras").optimizer.get_config()["learning_rate"]
        assert isinstance(rate, dict) == decays, rate
