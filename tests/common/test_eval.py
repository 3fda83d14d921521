import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.eval import (accuracy, class_counts, extract_features, knn_accuracy, knn_evaluate, shot_accuracy,
                         train_linear_probe, weighted_knn_predict)
from common.golden import golden_file


def _clusters(n, d=16, c=5, seed=0, noise=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 2
    labels = torch.randint(0, c, (n,), generator=g)
    x = centres[labels] + noise * torch.randn(n, d, generator=g)
    return F.normalize(x, dim=1), labels


@pytest.mark.parametrize("temperature", [None, 0.1])
def test_knn_matches_sklearn(temperature):
    from sklearn.neighbors import KNeighborsClassifier
    bank, bank_labels = _clusters(400, seed=1, noise=2.5)
    test, _ = _clusters(150, seed=2, noise=2.5)
    k, c = 15, 5
    if temperature is None:
        weights = "uniform"
    else:  # sklearn's cosine distance is 1 - sim, so exp(sim / T) = exp((1 - dist) / T)
        weights = lambda dist: np.exp((1.0 - dist) / temperature)  # noqa: E731
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights=weights, algorithm="brute")
    clf.fit(bank.double().numpy(), bank_labels.numpy())
    expected = clf.predict(test.double().numpy())
    _, pred = weighted_knn_predict(test.double(), bank.double(), bank_labels, c, k=k, temperature=temperature)
    assert (pred[:, 0].numpy() == expected).mean() == 1.0
    probs = clf.predict_proba(test.double().numpy())
    scores, _ = weighted_knn_predict(test.double(), bank.double(), bank_labels, c, k=k, temperature=temperature)
    np.testing.assert_allclose((scores / scores.sum(1, keepdim=True)).numpy(), probs, rtol=1e-5, atol=1e-9)


def test_knn_chunking_and_layout_do_not_change_the_result():
    bank, bank_labels = _clusters(300, seed=3)
    test, _ = _clusters(37, seed=4)
    s1, p1 = weighted_knn_predict(test, bank, bank_labels, 5, k=20, temperature=0.07)
    s2, p2 = weighted_knn_predict(test, bank.t().contiguous(), bank_labels, 5, k=20, temperature=0.07,
                                  chunk_size=4, bank_is_transposed=True)
    torch.testing.assert_close(s1, s2)
    assert torch.equal(p1, p2)
    # k larger than the bank is clamped
    s3, _ = weighted_knn_predict(test, bank[:10], bank_labels[:10], 5, k=200, temperature=0.1)
    assert s3.shape == (37, 5)


def test_knn_ascl_fixture():
    f = torch.load(golden_file("ascl", "knn_k200_t01.pt"), weights_only=False)
    t, h = f["tensors"], f["hparams"]
    scores, pred = weighted_knn_predict(t["feature"], t["feature_bank"], t["feature_labels"], h["classes"],
                                        k=h["knn_k"], temperature=h["knn_t"], bank_is_transposed=True)
    torch.testing.assert_close(scores, t["pred_scores"], rtol=1e-5, atol=1e-5)
    assert torch.equal(pred[:, 0], t["pred_top1"])
    assert int((pred[:, 0] == t["test_labels"]).sum()) == int(t["top1_correct"])


def test_knn_cacr_fixture():
    f = torch.load(golden_file("cacr", "knn_k20_T0.07.pt"), weights_only=False)
    t, h = f["tensors"], f["hparams"]
    for k in h["ks"]:
        top1, top5 = knn_accuracy(t["test_features"], t["test_labels"], t["train_features"], t["train_labels"],
                                  h["num_classes"], k=k, temperature=h["T"], topk=(1, 5), chunk_size=7)
        assert top1 == pytest.approx(float(t[f"top1_k{k}"]), abs=1e-9)
        assert top5 == pytest.approx(float(t[f"top5_k{k}"]), abs=1e-9)


def test_shot_accuracy_fixture():
    f = torch.load(golden_file("paco", "shot_acc_12cls.pt"), weights_only=False)
    t, h = f["tensors"], f["hparams"]
    for counts in (t["train_counts"], class_counts(t["train_labels"], h["num_classes"])):
        r = shot_accuracy(t["preds"], t["labels"], counts, h["many_shot_thr"], h["low_shot_thr"])
        assert r["many"] == pytest.approx(float(t["many_acc"]), abs=1e-12)
        assert r["medium"] == pytest.approx(float(t["medium_acc"]), abs=1e-12)
        assert r["few"] == pytest.approx(float(t["few_acc"]), abs=1e-12)
        assert torch.equal(r["classes"], t["per_class_acc_classes"])
        torch.testing.assert_close(r["per_class_acc"], t["per_class_acc"].double())
        assert r["top1"] == pytest.approx(float(t["top1_percent"]), abs=1e-4)  # fixture is float32


def test_shot_accuracy_groups_and_absent_classes():
    counts = torch.tensor([200, 50, 5, 150])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])       # classes 2 and 3 absent from the test set
    preds = torch.tensor([0, 1, 1, 1, 0, 0])
    r = shot_accuracy(preds, labels, counts)
    assert r["many"] == pytest.approx(0.5) and r["medium"] == pytest.approx(0.5) and r["few"] == 0.0
    assert r["classes"].tolist() == [0, 1]


def test_accuracy_topk():
    out = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.2, 0.35, 0.45]])
    target = torch.tensor([2, 0, 2, 1])
    top1, top2 = accuracy(out, target, topk=(1, 2))
    assert float(top1) == pytest.approx(50.0) and float(top2) == pytest.approx(100.0)
    (top5,) = accuracy(out, target, topk=(5,))
    assert float(top5) == pytest.approx(100.0)


def test_linear_probe_and_knn_evaluate():
    x, y = _clusters(600, d=8, c=4, seed=5, noise=0.8)
    xt, yt = x[:400], y[:400]
    xv, yv = x[400:], y[400:]
    acc = train_linear_probe(xt, yt, xv, yv, epochs=30, lr=1.0, batch_size=64)
    assert acc > 90.0
    acc_adam, hist = train_linear_probe(xt, yt, xv, yv, epochs=5, lr=1e-2, optimizer="adam", schedule="step",
                                        milestones=(3,), return_history=True)
    assert len(hist) == 5 and hist[-1] == acc_adam
    # a loader over raw features and a frozen "network" that is the identity
    loader = [(xt[i:i + 50], yt[i:i + 50]) for i in range(0, 400, 50)]
    test_loader = [(xv[i:i + 64], yv[i:i + 64]) for i in range(0, 200, 64)]
    net = torch.nn.Sequential(torch.nn.Identity())
    net.train()
    top1 = knn_evaluate(net, loader, test_loader, "cpu", k=20, temperature=0.1, num_classes=4)
    assert net.training  # mode restored
    feats, labels = extract_features(net, test_loader, "cpu", normalize=True)
    _, pred = weighted_knn_predict(feats, xt, yt, 4, k=20, temperature=0.1)
    assert top1 == pytest.approx(float((pred[:, 0] == yv).float().mean() * 100))
    assert top1 > 90.0
