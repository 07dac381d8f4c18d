import time

import numpy as np
import pytest

from conftest import fer_rows, write_fer_csv
from fer_keras import config, data
from fer_keras.data import FerDataError


# ------------------------------------------------------------------ FER2013 CSV
def test_full_kaggle_csv_has_three_usages(fer_csv):
    splits = data.load_fer2013(fer_csv)
    assert list(splits) == ["Training", "PublicTest", "PrivateTest"]
    assert [len(s.y) for s in splits.values()] == [4, 2, 2]
    tr = splits["Training"]
    assert tr.x.dtype == np.uint8 and tr.x.shape == (4, 48, 48)
    assert tr.y.dtype == np.int64 and tr.rows.tolist() == [0, 1, 2, 3]
    first = np.array(fer_rows()[0][1].split(), int).reshape(48, 48)
    np.testing.assert_array_equal(tr.x[0], first)


def test_gzip_and_usage_subset(tmp_path):
    path = write_fer_csv(tmp_path / "f.csv.gz", fer_rows((3, 2, 0)), gz=True)
    splits = data.load_fer2013(path, usages=["PublicTest"])
    assert list(splits) == ["PublicTest"] and splits["PublicTest"].rows.tolist() == [3, 4]
    with pytest.raises(FerDataError, match="has no PrivateTest rows"):
        data.load_fer2013(path, usages=["PrivateTest"])


def test_parse_values_up_to_255_and_extra_spaces(tmp_path):
    px = " ".join(["255"] * 1000 + ["0"] * 1000 + ["7"] * 304)
    path = write_fer_csv(tmp_path / "f.csv", [(3, "  " + px.replace(" ", "  ", 3) + " ", "Training")])
    x = data.load_fer2013(path)["Training"].x
    assert x[0].ravel()[:1000].tolist() == [255] * 1000 and x[0].ravel()[-1] == 7


def _bad(tmp_path, rows, header="emotion,pixels,Usage"):
    return write_fer_csv(tmp_path / "bad.csv", rows, header)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: (r[0], " ".join(r[1].split()[:-1]), r[2]), r"line 4 \(data row 2\): 2303 pixel values"),
    (lambda r: (r[0], r[1].replace(" ", " x", 1), r[2]), r"line 4 .*integers 0-255.*'x'"),
    (lambda r: (r[0], "-" + r[1], r[2]), r"line 4 .*found '-'"),
    (lambda r: (r[0], "256 " + " ".join(r[1].split()[1:]), r[2]), r"line 4 .*pixel value 256 is above 255"),
    (lambda r: (r[0], "1000 " + " ".join(r[1].split()[1:]), r[2]), r"line 4 .*pixel value 1000"),
    (lambda r: (r[0], r[1], "Validation"), r"line 4 .*Usage='Validation'"),
    (lambda r: (7, r[1], r[2]), r"line 4 .*emotion='7' is not a label 0-6"),
    (lambda r: ("happy", r[1], r[2]), r"line 4 .*emotion='happy'"),
])
def test_malformed_rows_name_file_line_and_fix(tmp_path, mutate, message):
    rows = fer_rows()
    rows[2] = mutate(rows[2])
    path = _bad(tmp_path, rows)
    with pytest.raises(FerDataError, match=message) as err:
        data.load_fer2013(path)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_missing_column_file_empty_and_ragged(tmp_path):
    with pytest.raises(FerDataError, match="missing column.*Usage.*Fix"):
        data.load_fer2013(_bad(tmp_path, [(0, "1 " * 2304, "")], header="emotion,pixels,Split"))
    with pytest.raises(FerDataError, match="file not found.*FER_KERAS_DATA"):
        data.load_fer2013(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(FerDataError, match="empty"):
        data.load_fer2013(tmp_path / "empty.csv")
    (tmp_path / "ragged.csv").write_text("emotion,pixels,Usage\n0,1 2,Training,extra\n")
    with pytest.raises(FerDataError, match="line 2 has more fields than the header"):
        data.load_fer2013(tmp_path / "ragged.csv")
    (tmp_path / "ragged3.csv").write_text("emotion,pixels,Usage\n0,1,Training\n0,1 2,Training,extra\n")
    with pytest.raises(FerDataError, match="not a valid FER2013.*line 3"):
        data.load_fer2013(tmp_path / "ragged3.csv")
    (tmp_path / "binary.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FerDataError, match="cannot be read"):
        data.load_fer2013(tmp_path / "binary.csv.gz")


def test_find_data_by_env_var(tmp_path, monkeypatch, fer_csv):
    monkeypatch.setenv("FER_KERAS_DATA", str(fer_csv.parent))
    assert data.find_data_file(config.FER2013_FILES) == fer_csv
    monkeypatch.setenv("FER_KERAS_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FerDataError, match="looked in"):
        data.find_data_file(config.FER2013_FILES)


def test_full_fer2013_parses_fast_and_matches_counts(shared_data):
    start = time.perf_counter()
    splits = data.load_fer2013(shared_data / "fer2013_train_publictest.csv.gz")
    seconds = time.perf_counter() - start
    assert np.bincount(splits["Training"].y).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert np.bincount(splits["PublicTest"].y).tolist() == [467, 56, 496, 895, 653, 415, 607]
    print(f"full FER2013 CSV (32,298 rows) parsed in {seconds:.1f} s")
    assert seconds < 60


# ------------------------------------------------------------------ FER+
def _votes(*rows):
    return np.array(rows, np.float32)


def test_ferplus_majority_rule():
    #            neu hap sur sad ang dis fea con unk NF
    votes = _votes([6, 0, 0, 1, 3, 0, 0, 0, 0, 0],   # 1 vote zeroed -> 6/9 neutral
                   [4, 4, 0, 0, 0, 0, 0, 0, 2, 0],   # tie -> unknown -> dropped
                   [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],   # NF majority -> dropped
                   [0, 0, 0, 0, 0, 2, 0, 6, 2, 0],   # contempt majority
                   [5, 0, 0, 0, 0, 0, 0, 0, 5, 0],   # exactly half -> unknown
                   [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])   # all single votes -> unknown
    labels, keep = data.ferplus_labels(votes, "majority", "ferplus8")
    assert keep.tolist() == [True, False, False, True, False, False]
    names = config.LABEL_SETS["ferplus8"]
    assert names[labels[0]] == "neutral" and names[labels[3]] == "contempt"
    ferm, _ = data.ferplus_labels(votes, "majority", "ferm")
    s004, _ = data.ferplus_labels(votes, "majority", "ferplus7")
    assert config.FER2013_CLASSES[ferm[3]] == "disgust" and config.FER2013_CLASSES[s004[3]] == "neutral"


def test_ferplus_probability_rule():
    votes = _votes([6, 3, 0, 1, 0, 0, 0, 0, 0, 0],   # the 1 is zeroed; 6 + 3 cover 100 % -> 2/3, 1/3
                   [5, 3, 2, 0, 0, 0, 0, 0, 0, 0],   # 5 + 3 reach 75 % -> stop: 5/8, 3/8
                   [3, 3, 2, 2, 0, 0, 0, 0, 0, 0],   # ties take 4 classes (> 3) -> dropped
                   [2, 2, 2, 2, 2, 0, 0, 0, 0, 0],   # 5 tied classes -> dropped
                   [3, 0, 0, 0, 0, 0, 0, 0, 3, 4])   # NF tops -> dropped
    probs, keep = data.ferplus_labels(votes, "probability", "ferplus8")
    names = config.LABEL_SETS["ferplus8"]
    assert keep.tolist() == [True, True, False, False, False] and probs.dtype == np.float32
    np.testing.assert_allclose(probs[keep].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0, [names.index("neutral"), names.index("happy")]], [2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(probs[1, [names.index("neutral"), names.index("happy")]], [5 / 8, 3 / 8], rtol=1e-6)
    assert probs[1, names.index("surprise")] == 0
    with pytest.raises(ValueError, match="mode"):
        data.ferplus_labels(votes, "argmax")


def test_ferm_counts_reproduce_s000(shared_data):
    votes, usage, has_name = data.read_ferplus_votes(shared_data / "fer2013new.csv")
    _, keep = data.ferplus_labels(votes, "majority", "ferm")
    keep &= has_name
    assert [int(keep[usage == u].sum()) for u in config.USAGES] == [25060, 3199, 3153]


def test_load_ferplus_aligns_without_private_test(shared_data):
    splits = data.load_ferplus(shared_data / "fer2013_train_publictest.csv.gz", shared_data / "fer2013new.csv",
                               "majority", "ferm")
    assert list(splits) == ["Training", "PublicTest"]
    assert len(splits["Training"].y) == 25060 and len(splits["PublicTest"].y) == 3199


def test_ferplus_row_count_mismatch(tmp_path, fer_csv):
    header = "Usage,Image name," + ",".join(config.FERPLUS_VOTE_COLUMNS)
    lines = [f"{u},fer{i:07d}.png,10,0,0,0,0,0,0,0,0,0" for i, u in enumerate(["Training"] * 3 + ["PublicTest"] * 2)]
    plus = tmp_path / "fer2013new.csv"
    plus.write_text(header + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(FerDataError, match=r"has 3 Training rows but .* has 4: .*not\s+aligned.*Fix"):
        data.load_ferplus(fer_csv, plus)


def test_ferplus_bad_votes(tmp_path, fer_csv):
    header = "Usage,Image name," + ",".join(config.FERPLUS_VOTE_COLUMNS)
    plus = tmp_path / "fer2013new.csv"
    plus.write_text(header + "\nTraining,a.png,ten,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(FerDataError, match="line 2 .*non-negative"):
        data.read_ferplus_votes(plus)


def test_sample_ferplus_and_soft_labels():
    splits = data.load_dataset("sample", "ferplus8:probability")
    y = splits["Training"].y
    assert y.ndim == 2 and y.shape[1] == 8 and np.allclose(y.sum(axis=1), 1)
    hard = data.load_dataset("sample", "ferm")["PublicTest"]
    assert hard.y.max() < 7 and len(hard.y) < 350  # unknown / NF images dropped
    with pytest.raises(ValueError, match="label mode"):
        data.load_dataset("sample", "fer+")


# ------------------------------------------------------------------ CK+
def test_ckplus_sample_loads():
    ck = data.load_ckplus(data.sample_path("ckplus"))
    assert ck.x.shape[1:] == (48, 48) and len(ck.y) == len(ck.subject) == len(ck.frame)
    assert set(np.unique(ck.y)) == set(range(7))


def test_subject_kfold_is_subject_independent_and_deterministic():
    ck = data.load_ckplus(data.sample_path("ckplus"))
    folds = data.subject_kfold(ck.y, ck.subject, k=5, seed=0)
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate([te for _, te in folds])), np.arange(len(ck.y)))
    for tr, te in folds:
        assert not set(ck.subject[tr]) & set(ck.subject[te])
    again = data.subject_kfold(ck.y, ck.subject, k=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    with pytest.raises(ValueError, match="subjects cannot fill"):
        data.subject_kfold(ck.y, ck.subject, k=100)


def test_ckplus_full_folds(shared_data):
    ck = data.load_ckplus(shared_data / "ckplus48.csv.gz")
    assert np.bincount(ck.y).tolist() == [135, 177, 75, 207, 84, 249, 54]
    leaky = data.leaky_kfold(ck.y)
    # fold 1 is S000's 882 / 99 split, per class as in its Table 3-2
    assert len(leaky[0][0]) == 882 and np.bincount(ck.y[leaky[0][1]]).tolist() == [12, 18, 9, 21, 9, 24, 6]
    assert sum(bool(set(ck.subject[tr]) & set(ck.subject[te])) for tr, te in leaky) == 10  # every fold leaks
    fair = data.subject_kfold(ck.y, ck.subject, k=10)
    assert all(not set(ck.subject[tr]) & set(ck.subject[te]) for tr, te in fair)
    assert all(len(np.unique(ck.y[te])) >= 5 for _, te in fair)  # stratified as far as subjects allow


def test_ckplus_bad_emotion(tmp_path):
    path = tmp_path / "ck.csv"
    path.write_text("emotion,subject,sequence,frame,pixels\nneutral,S1,1,1," + " ".join(["0"] * 2304) + "\n")
    with pytest.raises(FerDataError, match="line 2 .*'neutral' is not a CK\\+ class"):
        data.load_ckplus(path)


# ------------------------------------------------------------------ weights, samples, splits
def test_class_weights_balanced():
    y = np.array([0] * 6 + [1] * 2 + [2] * 4)
    w = data.class_weights(y, n_classes=4)
    assert w[0] == pytest.approx(12 / (3 * 6)) and w[1] == pytest.approx(12 / (3 * 2)) and w[3] == 1.0
    assert data.class_weights(np.eye(3)[y])[1] == pytest.approx(2.0)


def test_stratified_indices_and_holdout():
    y = np.repeat(np.arange(7), [30, 3, 30, 30, 30, 30, 30])
    idx = data.stratified_indices(y, 5, seed=1)
    assert np.bincount(y[idx]).tolist() == [5, 3, 5, 5, 5, 5, 5]
    tr, va = data.holdout_split(y, 0.1, seed=0)
    assert not set(tr) & set(va) and len(tr) + len(va) == len(y)
    assert np.bincount(y[va], minlength=7)[0] == 3


def test_training_folds_cover_every_face_once_stratified_and_repeatably():
    y = np.repeat(np.arange(7), [40, 4, 40, 40, 40, 40, 40])
    folds = data.training_folds(y, 4, seed=0)
    assert folds.shape == y.shape and set(folds) == {0, 1, 2, 3}
    assert np.array_equal(folds, data.training_folds(np.eye(7)[y], 4, seed=0))  # one-hot labels: the same folds
    for f in range(4):  # every class spread evenly over the folds
        assert np.bincount(y[folds == f], minlength=7).tolist() == [10, 1, 10, 10, 10, 10, 10]
    assert not np.array_equal(folds, data.training_folds(y, 4, seed=1))


def test_to_model_input():
    x = data.to_model_input(np.zeros((2, 48, 48), np.uint8))
    assert x.shape == (2, 48, 48, 1) and x.dtype == np.float32
    with pytest.raises(ValueError, match="grey"):
        data.to_model_input(np.zeros((2, 48, 48, 3)))


def test_compare_labels_and_fold_leakage():
    fer = data.load_dataset("sample")["Training"]
    plus = data.load_dataset("sample", "ferplus8")["Training"]
    table = data.compare_labels(fer, plus)
    assert table.shape == (7, 8) and table.to_numpy().sum() == len(plus.y)
    happy = table.loc["happy", "happy"]
    assert happy >= 40  # FER+ keeps most happy labels
    groups = np.array(["a", "a", "b", "c"])
    folds = [(np.array([0, 2]), np.array([1, 3])), (np.array([0, 1]), np.array([2, 3]))]
    assert data.fold_leakage(folds, groups) == [1, 0]


def test_parse_pixels_chunks_keep_row_numbers():
    rows = [" ".join(["1"] * 2304)] * 7
    rows[5] = " ".join(["1"] * 2300)
    with pytest.raises(FerDataError, match=r"line 7 \(data row 5\): 2300 pixel values"):
        data.parse_pixels(rows, "x.csv", chunk=2)
    rows[5] = rows[0]
    assert data.parse_pixels(rows, chunk=3).shape == (7, 48, 48)


def test_compact_npy_copy(tmp_path, shared_data):
    import shutil

    for name in ("fer2013_publictest.npy.xz", "fer2013_labels.csv"):
        shutil.copy(shared_data / name, tmp_path / name)
    with pytest.raises(FerDataError, match="no fer2013_training.npy.xz"):
        data.load_compact(tmp_path, ["Training"])
    test = data.load_compact(tmp_path)["PublicTest"]
    csv = data.load_fer2013(shared_data / "fer2013_train_publictest.csv.gz", ["PublicTest"])["PublicTest"]
    np.testing.assert_array_equal(test.x, csv.x)
    np.testing.assert_array_equal(test.y, csv.y)
    np.testing.assert_array_equal(test.rows, csv.rows)


def test_compact_bad_files(tmp_path):
    import lzma

    (tmp_path / "fer2013_labels.csv").write_text("row,emotion,Usage\n0,3,Training\n1,4,Training\n")
    with lzma.open(tmp_path / "fer2013_training.npy.xz", "wb") as f:
        np.save(f, np.zeros((3, 48, 48), np.uint8))
    with pytest.raises(FerDataError, match=r"shape \(3, 48, 48\).*expected \(2, 48, 48\)"):
        data.load_dataset(tmp_path)
    (tmp_path / "fer2013_training.npy.xz").write_bytes(b"\xfd7zXZ\x00broken")
    with pytest.raises(FerDataError, match="unreadable"):
        data.load_compact(tmp_path)


def test_votes_aligned_with_fer2013_rows_agreement_and_disputed_faces():
    splits = data.load_with_votes("sample")
    split, votes = splits["PublicTest"]
    assert votes.shape == (len(split.y), 10)
    table = data.label_agreement(split.y, votes)
    assert table.loc["all", "faces"] == 350
    parts = table[["FER+ same", "FER+ other class", "FER+ dropped"]].sum(axis=1)
    np.testing.assert_allclose(parts.to_numpy(), 1.0)
    # a face whose 10 votes all went to its FER2013 label has share 1; none for it -> 0
    v = np.zeros((2, 10), np.float32)
    v[0, config.FERPLUS_VOTE_COLUMNS.index("happiness")] = 10
    v[1, config.FERPLUS_VOTE_COLUMNS.index("anger")] = 10
    happy = config.FER2013_CLASSES.index("happy")
    assert data.vote_share(np.array([happy, happy]), v).tolist() == [1.0, 0.0]
    picked = data.most_disputed(split.y, votes, 7)
    shares = data.vote_share(split.y, votes)
    assert len(picked) == 7 and len(set(picked)) == 7
    assert shares[picked].max() <= np.sort(shares)[len(shares) // 2]  # from the disputed half


def test_holdout_split_keeps_singleton_classes_in_training():
    y = np.array([0] * 20 + [1] * 20 + [2])
    tr, va = data.holdout_split(y, 0.2, seed=0)
    assert 40 in tr and len(va) == 8 and set(np.bincount(y[va]).tolist()) == {4}
