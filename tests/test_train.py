import pytest
import torch
from torch import nn

from labkit import models, train


def _config(**kw):
    return train.TrainConfig(**{"epochs": 3, "lr": 0.05, "batch_size": 32, "augment": False, **kw})


def test_fit_learns_records_history_and_best_state(tiny_data):
    torch.manual_seed(0)  # the initial weights come from the global RNG; other tests move it
    net = models.lenet5()
    hist = train.fit(net, tiny_data, _config(epochs=4), progress=False)
    assert len(hist.train_loss) == len(hist.test_acc) == len(hist.images_per_s) == 4
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.best_acc == max(hist.test_acc) and hist.test_acc[hist.best_epoch] == hist.best_acc
    assert hist.best_acc > 0.5  # the tiny task is learnable; chance is 0.1
    net.load_state_dict(hist.best_state)
    assert train.evaluate(net, tiny_data)[1] == pytest.approx(hist.best_acc)


def test_restore_best_ends_in_the_best_state(tiny_data):
    torch.manual_seed(0)
    net = models.lenet5()
    hist = train.fit(net, tiny_data, _config(epochs=4, lr=0.5), progress=False, restore_best=True)
    assert all(torch.equal(v, hist.best_state[k]) for k, v in net.state_dict().items())
    assert train.evaluate(net, tiny_data)[1] == pytest.approx(hist.best_acc)


def test_fit_trains_on_the_policy_device_and_reads_the_host_once_per_epoch(tiny_data):
    from labkit import device
    from labkit.measure import count_host_syncs

    net = models.lenet5()
    train.fit(net, tiny_data, _config(epochs=1, max_batches=1), progress=False)
    assert next(net.parameters()).device == device.get_device()
    reads = [count_host_syncs(train.fit, models.lenet5(), tiny_data, _config(epochs=1, max_batches=n),
                              progress=False) for n in (1, 4)]
    assert reads[0] == reads[1] > 0  # per epoch (metrics, evaluation), not per step


def test_fit_is_deterministic_on_cpu(tiny_data):
    states = []
    for noise_seed in (1, 2):
        torch.manual_seed(0)
        net = models.lenet5()
        torch.manual_seed(noise_seed)  # fit reseeds itself: global RNG state before it must not matter
        train.fit(net, tiny_data, _config(), progress=False, device="cpu")
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_callbacks_run_before_epochs_and_after_every_step(tiny_data):
    calls = []

    class Spy(train.Callback):
        def on_epoch_start(self, epoch, model):
            calls.append(("epoch", epoch))

        def after_step(self, model):
            calls.append(("step",))

    train.fit(models.lenet5(), tiny_data, _config(epochs=2, batch_size=64), callbacks=[Spy()],
              progress=False)
    assert calls == [("epoch", 0)] + [("step",)] * 4 + [("epoch", 1)] + [("step",)] * 4


def test_best_after_and_max_batches(tiny_data):
    config = _config(epochs=3, best_after=2, max_batches=2)
    hist = train.fit(models.lenet5(), tiny_data, config, progress=False)
    assert hist.best_epoch == 2
    assert hist.images_per_s[0] > 0


def test_evaluate_restores_mode(tiny_data):
    net = models.lenet5().train()
    loss, acc = train.evaluate(net, tiny_data)
    assert net.training and 0 <= acc <= 1 and loss > 0


@pytest.mark.parametrize("schedule", train.LR_SCHEDULES)
def test_lr_schedules_start_high_and_end_low(schedule):
    f = [train._lr_factor(schedule, s, 100) for s in range(100)]
    assert f[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))
    if schedule != "constant":
        assert f[-1] < 0.02


def test_bad_config():
    for kw, match in ((dict(schedule="step"), "schedule"), (dict(epochs=-1), "epochs"),
                      (dict(batch_size=0), "batch_size"), (dict(lr=0), "lr")):
        with pytest.raises(ValueError, match=match):
            train.TrainConfig(**kw)


def test_sgd_step_updates_only_via_optimizer(tiny_data):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    before = net[1].weight.detach().clone()
    train.fit(net, tiny_data, _config(epochs=1, max_batches=1), progress=False)
    assert not torch.equal(before, net[1].weight.cpu())
