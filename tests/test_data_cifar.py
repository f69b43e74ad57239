"""CIFAR-10/100 python batches through the restricted unpickler (docs/data.md)."""

from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnatlas.data import dataset_splits, load_dataset
from cnnatlas.data.cifar import CIFAR10, CIFAR100, restricted_load
from cnnatlas.errors import DataError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch(n: int, seed: int, *, label_key: str = "labels", num_classes: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"batch {seed}",
        label_key: rng.integers(0, num_classes, n).tolist(),
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def write_cifar10(
    root: Path, *, per_batch: int = 3, protocol: int = 2, overrides: dict[str, bytes] | None = None
) -> dict[str, dict]:
    """A miniature cifar-10-batches-py folder; returns the batches written."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {name: batch(per_batch, i) for i, name in enumerate(CIFAR10.splits["train"] + CIFAR10.splits["test"])}
    files = {name: pickle.dumps(b, protocol=protocol) for name, b in batches.items()}
    files["batches.meta"] = pickle.dumps(
        {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, protocol=protocol
    )
    files.update(overrides or {})
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    return batches


def load10(root: Path, split: str = "train"):
    return load_dataset("cifar10", root=root, split=split, verify_checksums=False)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_loads_images_labels_and_class_names(tmp_path: Path, protocol: int) -> None:
    batches = write_cifar10(tmp_path, protocol=protocol)
    train, test = load10(tmp_path), load10(tmp_path, "test")
    assert (len(train), len(test)) == (15, 3)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert train.classes == tuple(CIFAR10_NAMES)
    # A row is 1024 red, 1024 green, 1024 blue values of a row-major 32×32 image (CIFAR page).
    first = batches["data_batch_1"]["data"][0]
    assert torch.equal(train.images[0, 1], torch.from_numpy(first[1024:2048].reshape(32, 32)))
    assert train.labels.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert torch.equal(test.images.reshape(3, -1), torch.from_numpy(batches["test_batch"]["data"]))


def test_root_may_be_the_extracted_folder_or_its_parent(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    a, b = load10(tmp_path), load10(tmp_path / "cifar-10-batches-py")
    assert torch.equal(a.images, b.images)
    assert dataset_splits("cifar10", tmp_path) == ["train", "test"]


def test_cifar100_reads_fine_labels_and_names(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"fine_{i}" for i in range(100)]
    (folder / "meta").write_bytes(
        pickle.dumps({"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]}, protocol=2)
    )
    train = batch(4, 0, label_key="fine_labels", num_classes=100)
    train["coarse_labels"] = [0, 1, 2, 3]
    (folder / "train").write_bytes(pickle.dumps(train, protocol=2))
    ds = load_dataset("cifar100", root=tmp_path, verify_checksums=False)
    assert ds.num_classes == 100 and ds.classes[7] == "fine_7" and ds.labels.tolist() == train["fine_labels"]
    assert dataset_splits("cifar100", tmp_path) == ["train"]
    with pytest.raises(DataError, match=r"file test not found"):
        load_dataset("cifar100", root=tmp_path, split="test", verify_checksums=False)


def test_checksums_of_standard_files_are_checked_by_default(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    # Our crafted files are not the originals, so the MD5s torchvision 0.29 lists cannot match.
    with pytest.raises(
        DataError,
        match=r"batches.meta: MD5 checksum [0-9a-f]{32} does not match the official 5ff9c542aee3614f3951f8cda6e48888",
    ):
        load_dataset("cifar10", root=tmp_path)


def test_checksum_constants_are_torchvisions() -> None:
    from torchvision.datasets import CIFAR10 as TV10
    from torchvision.datasets import CIFAR100 as TV100

    for ours, theirs in ((CIFAR10, TV10), (CIFAR100, TV100)):
        expected = dict(theirs.train_list + theirs.test_list)
        expected[theirs.meta["filename"]] = theirs.meta["md5"]
        assert ours.md5 == expected
        assert ours.folder == theirs.base_folder and ours.class_key == theirs.meta["key"]


# -- a Python-2 era batch, written opcode by opcode ---------------------------------------------
def python2_batch(data: np.ndarray, labels: list[int], *, claimed_shape: tuple[int, int] | None = None) -> bytes:
    """The bytes cPickle (protocol 2) wrote for the original batches: numpy.core names, the array
    data as a Python-2 str (BINSTRING), keys as str."""

    def s(text: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(text)]) + text

    n, width = claimed_shape or data.shape
    out = b"\x80\x02}(" + s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
    out += b"(K\x01" + b"J" + struct.pack("<i", n) + b"J" + struct.pack("<i", width) + b"\x86"
    out += (
        b"cnumpy\ndtype\n"
        + s(b"u1")
        + b"K\x00K\x01\x87R(K\x03"
        + s(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    out += b"\x89T" + struct.pack("<I", data.nbytes) + data.tobytes() + b"tb"
    out += s(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return out + b"u."


def test_python2_batch_reads_like_pickle_itself_reads_it(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, (2, 3072), dtype=np.uint8)
    blob = python2_batch(data, [3, 9])
    (tmp_path / "b").write_bytes(blob)
    reference = pickle.loads(blob, encoding="latin1")  # trusted here: we wrote the bytes ourselves
    ours = restricted_load(tmp_path / "b")
    assert np.array_equal(reference["data"], data) and np.array_equal(ours["data"], data)
    assert ours["labels"] == reference["labels"] == [3, 9]


def test_array_whose_header_claims_more_data_than_it_has_is_refused(tmp_path: Path) -> None:
    data = np.zeros((2, 3072), dtype=np.uint8)
    (tmp_path / "b").write_bytes(python2_batch(data, [0, 1], claimed_shape=(2**31 - 1, 2**31 - 1)))
    with pytest.raises(DataError, match=r"needs 4611686014132420609 bytes of data, has 6144"):
        restricted_load(tmp_path / "b")


# -- hostile and malformed batches -------------------------------------------------------------
class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsPython:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload_type", [_RunsShell, _RunsPython])
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_a_batch_that_tries_to_run_code_is_rejected_and_nothing_runs(tmp_path: Path, payload_type, where: str) -> None:
    marker = tmp_path / "payload-ran"
    hostile = batch(3, 0)
    hostile["labels"] = [0, payload_type(marker), 1]  # buried inside, not at the top
    if where == "batches.meta":
        hostile = {"label_names": CIFAR10_NAMES, "x": payload_type(marker)}
    write_cifar10(tmp_path, overrides={where: pickle.dumps(hostile, protocol=2)})
    with pytest.raises(
        DataError,
        match=(
            r"refused to unpickle global '(posix|os|nt)\.system'"
            r"|refused to unpickle global '(builtins|__builtin__)\.exec'"
        ),
    ) as info:
        load10(tmp_path)
    assert "nothing was executed" in str(info.value) and where in str(info.value)
    assert not marker.exists()
    # With checksums on (the default) the hostile file is refused before it is even unpickled.
    with pytest.raises(DataError, match="MD5"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("payload_type", [_RunsShell, _RunsPython])
def test_the_payloads_are_live(tmp_path: Path, payload_type) -> None:
    # Proof that the test above could fail: plain pickle (on bytes we made ourselves) runs them.
    marker = tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(payload_type(marker), protocol=2))
    assert marker.exists()


def test_protocol_0_global_opcode_is_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    (tmp_path / "b").write_bytes(f"cos\nsystem\n(Vtouch {marker}\ntR.".encode())
    with pytest.raises(DataError, match=r"refused to unpickle global 'os.system'"):
        restricted_load(tmp_path / "b")
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    # An object array would let a pickle smuggle arbitrary objects through numpy.
    (tmp_path / "b").write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(DataError, match="element type"):
        restricted_load(tmp_path / "b")


def _with_batch(tmp_path: Path, **changes) -> None:
    bad = batch(3, 0)
    bad.update(changes)
    write_cifar10(tmp_path, overrides={"data_batch_2": pickle.dumps(bad, protocol=2)})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"data": np.zeros((3, 3000), dtype=np.uint8)},
            r"data_batch_2: 'data' must be a uint8 array N×3072 .*got uint8 \(3, 3000\)",
        ),
        ({"data": np.zeros((3, 3072), dtype=np.float32)}, r"'data' must be a uint8 array N×3072 .*got float32"),
        ({"data": np.zeros((3, 32, 32, 3), dtype=np.uint8)}, r"'data' must be a uint8 array N×3072"),
        ({"labels": [0, 1]}, r"data_batch_2: 3 images but 2 labels"),
        ({"labels": [0, 10, 1]}, r"data_batch_2: label 10 at index 1 is outside 0–9"),
        ({"labels": [0, -1, 1]}, r"label -1 at index 1 is outside 0–9"),
        ({"labels": ["0", "1", "2"]}, r"'labels' must be a list of integers"),
    ],
)
def test_malformed_batches_are_data_errors(tmp_path: Path, changes: dict, message: str) -> None:
    _with_batch(tmp_path, **changes)
    with pytest.raises(DataError, match=message):
        load10(tmp_path)


def test_truncated_and_non_dict_pickles_are_data_errors(tmp_path: Path) -> None:
    good = pickle.dumps(batch(3, 0), protocol=2)
    write_cifar10(tmp_path, overrides={"data_batch_3": good[: len(good) // 2]})
    with pytest.raises(DataError, match=r"data_batch_3: not a readable CIFAR python batch"):
        load10(tmp_path)
    (tmp_path / "x").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match="expected a pickled dict"):
        restricted_load(tmp_path / "x")


def test_missing_meta_file_says_where_it_looked(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    assert dataset_splits("cifar10", tmp_path) == []
    with pytest.raises(DataError, match=r"batches.meta not found in .*nothing is downloaded"):
        load10(tmp_path)


def test_md5_helper_agrees_with_hashlib(tmp_path: Path) -> None:
    from cnnatlas.data.cifar import _md5

    blob = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(blob)
    assert _md5(tmp_path / "f") == hashlib.md5(blob).hexdigest()
