import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from labkit import plots  # noqa: E402
from labkit.train import History  # noqa: E402


def test_plot_history_marks_whole_epochs_only():
    h = History(train_loss=[0.9, 0.5, 0.4], train_acc=[0.6, 0.8, 0.85], test_loss=[1.0, 0.7, 0.6],
                test_acc=[0.55, 0.75, 0.8])
    fig = plots.plot_history({"run": h}, title="three epochs")
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert fig.axes[1].lines[1].get_ydata() == pytest.approx([55.0, 75.0, 80.0])  # test accuracy in percent
    plt.close(fig)


def test_cost_curve_pairs_each_setting_with_its_costs_and_accuracy():
    curve = plots.cost_curve({50: 0.9, 90: 0.8}, {50: 2.0, 90: 10.0}, {50: 1.5, 90: 4.0}, name="{}%")
    assert curve == {"50%": (2.0, 1.5, 0.9), "90%": (10.0, 4.0, 0.8)}
    with pytest.raises(KeyError):
        plots.cost_curve({50: 0.9}, {90: 10.0})


def test_points_at_one_cost_share_a_label_and_none_covers_the_reference_star():
    accuracy, size, macs = {0: 0.88, 50: 0.86, 90: 0.5}, {0: 1.001, 50: 2.0, 90: 10.0}, {0: 1, 50: 1, 90: 1}
    curve = plots.cost_curve(accuracy, size, macs, name="{}%")
    fig = plots.plot_accuracy_vs_cost({"fine": curve}, ("size", "MACs"), reference=(1, 1, 0.88))
    size, macs = ([t.get_text() for t in ax.texts] for ax in fig.axes)
    assert size == ["50%", "90%"]  # 0% sits on the star
    assert macs == ["0%..90%"]  # every point at x = 1: one label, at the most accurate
    assert fig.axes[1].texts[0].xy == (1.0, 88.0)
    plt.close(fig)
