"""RD figures (`mrvae plot` / `mrvae run` and the report): β labels of β-VAE points that sit on top of each
other are merged, never overprinted."""

from mrvae.evaluation.curves import RDCurve
from mrvae.report.figures import label_groups, plot_rd_curves, report_figures


def test_coinciding_points_share_one_label_and_distant_ones_keep_their_own():
    betas = [0.01, 1.0, 4.642, 10.0]
    rate = [54.6, 3.4, 0.002, 0.0]
    dist = [7.7, 20.3, 27.25, 27.26]
    groups = label_groups(betas, rate, dist, x_span=54.6, y_span=20.0)
    assert groups == [("β=0.01", 54.6, 7.7), ("β=1", 3.4, 20.3), ("β=4.64, 10", 0.002, 27.25)]
    # the tolerance is relative to the axis spans: zoomed in far enough, the last two separate
    assert len(label_groups(betas, rate, dist, x_span=0.01, y_span=0.01)) == 4


def test_the_figure_is_drawn_with_merged_labels(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    annotations = []
    original = Figure.savefig

    def capture(fig, path, **kwargs):
        annotations.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return original(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    sweep = RDCurve("beta-vae", "beta-vae", [1.0, 4.642, 10.0],
                    {"rate": [3.4, 0.002, 0.0], "distortion": [20.3, 27.25, 27.26]})
    path = plot_rd_curves([sweep], tmp_path / "rd.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert annotations == ["β=1", "β=4.64, 10"]


def test_the_report_figure_merges_labels_the_same_way(monkeypatch):
    from matplotlib.figure import Figure

    annotations = {}
    original = Figure.savefig

    def capture(fig, path, **kwargs):
        annotations[len(annotations)] = [t.get_text() for ax in fig.axes for t in ax.texts]
        return original(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    sweep = RDCurve("beta-vae", "beta-vae", [1.0, 4.642, 10.0],
                    {"rate": [3.4, 0.002, 0.0], "distortion": [20.3, 27.25, 27.26]})
    figures = report_figures([sweep])
    assert [f.key for f in figures] == ["rd", "rate", "distortion"]  # no active units in this curve
    assert annotations == {0: ["β=1", "β=4.64, 10"], 1: [], 2: []}


def test_a_dominated_point_is_reported_by_the_curve_check():
    from mrvae.config import Method

    # β = 0.01 has more rate AND more distortion than β = 0.03: no one should train for β = 0.01
    curve = RDCurve("mrvae", Method.MRVAE, [0.01, 0.03, 0.1], {"rate": [60.0, 58.0, 40.0],
                                                               "distortion": [82.0, 81.0, 85.0]})
    assert curve.dominated_points() == ["β = 0.01 (R 60, D 82) is dominated by β = 0.03 (R 58, D 81)"]
    assert "is dominated by β = 0.03" in curve.shape_verdict()
    monotone = RDCurve("mrvae", Method.MRVAE, [0.01, 0.1], {"rate": [60.0, 40.0], "distortion": [80.0, 85.0]})
    assert monotone.dominated_points() == [] and "no dominated point" in monotone.shape_verdict()
