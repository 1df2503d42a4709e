"""Tests of xcf.data.readers: folder + labels.csv, CheXpert, NIH boxes, patient splits."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import xcf.data as xcf_data
from xcf.data import (
    CHEXPERT_FINDINGS,
    CHEXPERT_SEED_FINDINGS,
    CheXpertDataset,
    FolderDataset,
    NIHBoxes,
    patient_split,
)
from xcf.errors import ConfigError, DataError, InvalidImageError, UnknownLabelError

REPO = Path(__file__).resolve().parents[1]
KERMANY = Path(os.environ.get("XCF_DATA_DIR") or REPO.parent / "shared" / "data") / "kermany-pneumonia-224"
RNG = np.random.default_rng(0)


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_jpeg(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue())
    return path


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check_item(item: tuple[torch.Tensor, torch.Tensor], size: int, k: int) -> None:
    image, labels = item
    assert image.dtype == torch.float32 and image.shape == (1, size, size)
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    assert labels.dtype == torch.float32 and labels.shape == (k,)


# --------------------------------------------------------------------------------------------------
# FolderDataset
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with 8-bit PNG, 16-bit PNG and JPEG images, 40x48 (non-square)."""
    write_png(tmp_path / "img" / "a.png", RNG.integers(0, 256, (40, 48), dtype=np.uint8))
    write_png(tmp_path / "img" / "b.png", RNG.integers(0, 65536, (40, 48), dtype=np.uint16))
    write_jpeg(tmp_path / "img" / "c.jpg", RNG.integers(0, 256, (40, 48), dtype=np.uint8))
    write_png(tmp_path / "img" / "d.png", np.full((40, 48), 200, dtype=np.uint8))
    write_csv(
        tmp_path / "labels.csv",
        [
            "path,split,patient_id,age,normal,pneumonia,note",
            "img/a.png,train,P1,34,1,0,ok",
            "img/b.png,train,P1,35,0,1,",
            "img/c.jpg,test,P2,60,0,1,x",
            "img/d.png,train,P3,7,1,0,",
        ],
    )
    return tmp_path


def test_folder_default_labels_and_items(folder: Path) -> None:
    ds = FolderDataset(folder, size=32)
    assert ds.labels == ("normal", "pneumonia")  # 'age' and 'note' are not 0/1 columns
    assert len(ds) == 4
    assert ds.paths[0] == folder / "img" / "a.png" and ds.path(2) == folder / "img" / "c.jpg"
    assert ds.path(-1) == folder / "img" / "d.png"
    assert ds.patient_ids == ("P1", "P1", "P2", "P3")
    assert torch.equal(
        ds.targets, torch.tensor([[1, 0], [0, 1], [0, 1], [1, 0]], dtype=torch.float32)
    )
    for i in range(len(ds)):
        check_item(ds[i], 32, 2)
    assert torch.equal(ds[1][1], torch.tensor([0.0, 1.0]))
    with pytest.raises(IndexError):
        ds[4]


def test_folder_size_none_and_aspect(folder: Path) -> None:
    native = FolderDataset(folder, size=None)
    assert native[0][0].shape == (1, 40, 48)
    crop = FolderDataset(folder, size=40, aspect="crop")
    assert torch.equal(crop[0][0], native[0][0][..., 4:44])
    pad = FolderDataset(folder, size=48, aspect="pad")
    assert torch.equal(pad[0][0][:, 4:44], native[0][0])


def test_folder_decodes_16bit_precisely(folder: Path) -> None:
    ds = FolderDataset(folder, size=None)
    image, _ = ds[1]
    assert torch.unique(image).numel() > 256  # 16-bit kept


def test_folder_explicit_labels_split_transform(folder: Path) -> None:
    ds = FolderDataset(
        folder, labels=["pneumonia"], split="train", size=32, transform=lambda x: 1.0 - x
    )
    assert ds.labels == ("pneumonia",) and len(ds) == 3
    assert ds.targets.shape == (3, 1)
    image, labels = ds[2]
    assert torch.allclose(image, torch.full((1, 32, 32), 1 - 200 / 255))
    assert torch.equal(labels, torch.tensor([0.0]))
    assert len(FolderDataset(folder, split="test")) == 1


def test_folder_labels_read_from_other_csv_and_no_patient_column(folder: Path) -> None:
    write_csv(folder / "other.csv", ["file,finding", "img/a.png,1", "img/c.jpg,0"])
    ds = FolderDataset(folder, "other.csv", path_column="file", size=32)
    assert ds.labels == ("finding",) and ds.patient_ids is None
    check_item(ds[1], 32, 1)


def _data_error(folder: Path, lines: list[str], **kwargs) -> str:
    write_csv(folder / "bad.csv", lines)
    with pytest.raises(DataError) as info:
        FolderDataset(folder, "bad.csv", **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(folder / "bad.csv") in msg
    return msg


def test_folder_missing_column(folder: Path) -> None:
    msg = _data_error(folder, ["path,normal", "img/a.png,1"], labels=["normal", "pneumonia"])
    assert "bad.csv:1:" in msg and "'pneumonia'" in msg and "columns present: path, normal" in msg
    msg = _data_error(folder, ["file,normal", "img/a.png,1"])
    assert "bad.csv:1:" in msg and "'path'" in msg
    msg = _data_error(folder, ["path,normal", "img/a.png,1"], split="train")
    assert "'split'" in msg


def test_folder_bad_value(folder: Path) -> None:
    msg = _data_error(folder, ["path,normal", "img/a.png,1", "img/b.png,maybe"], labels=["normal"])
    assert "bad.csv:3:" in msg and "'normal'" in msg and "'maybe'" in msg and "0 or 1" in msg


def test_folder_missing_file(folder: Path) -> None:
    msg = _data_error(folder, ["path,normal", "img/a.png,1", "img/zzz.png,0"])
    assert "bad.csv:3:" in msg and "img/zzz.png" in msg and "not found" in msg
    # without the check, the failure comes from the item, naming the file
    write_csv(folder / "lazy.csv", ["path,normal", "img/zzz.png,0"])
    ds = FolderDataset(folder, "lazy.csv", check_files=False)
    with pytest.raises(InvalidImageError, match="zzz.png"):
        ds[0]


def test_folder_other_malformed_csvs(folder: Path) -> None:
    assert "2 fields; expected 3" in _data_error(folder, ["path,normal,x", "img/a.png,1"])
    assert "no label column" in _data_error(folder, ["path,age", "img/a.png,44"])
    assert "empty 'path'" in _data_error(folder, ["path,normal", ",1"])
    assert "splits present: test, train" in _data_error(
        folder, ["path,split,normal", "img/a.png,train,1", "img/b.png,test,0"], split="val"
    )
    assert "empty CSV" in _data_error(folder, [""])
    with pytest.raises(DataError, match="not found"):
        FolderDataset(folder, "absent.csv")
    with pytest.raises(DataError, match="not found"):
        FolderDataset(folder / "nowhere")
    with pytest.raises(ConfigError):
        FolderDataset(folder, aspect="squash")


def test_folder_reads_dicom(folder: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 40, 40, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(1600, dtype="<u2").reshape(40, 40).tobytes()
    try:
        ds.save_as(folder / "img" / "e.dcm", enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.save_as(folder / "img" / "e.dcm", write_like_original=False)
    assert pydicom.dcmread(folder / "img" / "e.dcm").Rows == 40
    write_csv(folder / "dcm.csv", ["path,normal", "img/e.dcm,1"])
    image, labels = FolderDataset(folder, "dcm.csv", size=None)[0]
    assert image.shape == (1, 40, 40) and float(image.max()) == 1.0 and float(image.min()) == 0.0


def test_folder_dataloader_batches(folder: Path) -> None:
    loader = torch.utils.data.DataLoader(FolderDataset(folder, size=32), batch_size=3)
    images, labels = next(iter(loader))
    assert images.shape == (3, 1, 32, 32) and labels.shape == (3, 2)


@pytest.mark.realdata
def test_kermany_real_data() -> None:
    if not (KERMANY / "labels.csv").is_file():
        pytest.skip(f"real data set not found at {KERMANY}")
    train = FolderDataset(KERMANY, split="train")
    test = FolderDataset(KERMANY, split="test")
    assert len(train) == 5190 and len(test) == 307
    expected = ("normal", "pneumonia", "pneumonia_bacterial", "pneumonia_viral")
    assert train.labels == expected and test.labels == expected
    assert train.patient_ids is not None and len(train.patient_ids) == 5190
    assert train.targets.shape == (5190, 4)
    assert torch.equal(train.targets[:, 1], train.targets[:, 2] + train.targets[:, 3])
    check_item(train[0], 224, 4)
    image, _ = test[len(test) - 1]
    assert float(image.max()) > float(image.min())
    small = FolderDataset(KERMANY, split="test", size=64)
    check_item(small[0], 64, 4)


# --------------------------------------------------------------------------------------------------
# CheXpertDataset
# --------------------------------------------------------------------------------------------------

_CHEX_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_FINDINGS)


def _chex_row(patient: int, view: str, values: dict[str, str], split: str = "valid") -> str:
    kind = "frontal" if view == "Frontal" else "lateral"
    rel = f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study1/view1_{kind}.jpg"
    cells = [values.get(name, "") for name in CHEXPERT_FINDINGS]
    return ",".join([rel, "Female", "68", view, "AP" if view == "Frontal" else ""] + cells)


def _make_chexpert(base: Path, rows: list[str], name: str = "valid.csv") -> Path:
    root = base / "CheXpert-v1.0-small"
    root.mkdir(parents=True, exist_ok=True)
    for row in rows[1:]:
        rel = row.split(",")[0]
        if "patient" in rel:
            write_jpeg(base / rel, RNG.integers(0, 256, (40, 36), dtype=np.uint8))
    write_csv(root / name, rows)
    return root


@pytest.fixture
def chexpert(tmp_path: Path) -> Path:
    rows = [
        _CHEX_HEADER,
        _chex_row(1, "Frontal", {"Cardiomegaly": "1.0", "Edema": "-1.0", "Atelectasis": "0.0"}),
        _chex_row(1, "Lateral", {"Cardiomegaly": "1.0"}),
        _chex_row(2, "Frontal", {"Edema": "1.0", "Pleural Effusion": "-1.0", "Fracture": "1"}),
        _chex_row(3, "Frontal", {"Consolidation": "0", "Pleural Effusion": "-1"}),
    ]
    return _make_chexpert(tmp_path, rows)


@pytest.mark.parametrize(("policy", "u"), [("ones", 1.0), ("zeros", 0.0), ("ignore", math.nan)])
def test_chexpert_uncertainty_policies(chexpert: Path, policy: str, u: float) -> None:
    ds = CheXpertDataset(chexpert, uncertainty=policy, size=32)
    assert ds.labels == CHEXPERT_SEED_FINDINGS
    assert len(ds) == 3  # the lateral view is dropped
    # Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion
    expected = torch.tensor(
        [[1, u, 0, 0, 0], [0, 1, 0, 0, u], [0, 0, 0, 0, u]], dtype=torch.float32
    )
    assert torch.allclose(ds.targets, expected, equal_nan=True)
    check_item(ds[0], 32, 5)
    assert torch.allclose(ds[1][1], expected[1], equal_nan=True)


def test_chexpert_frontal_only_labels_and_patients(chexpert: Path) -> None:
    ds = CheXpertDataset(chexpert, frontal_only=False, labels=["Fracture", "Cardiomegaly"])
    assert len(ds) == 4 and ds.labels == ("Fracture", "Cardiomegaly")
    assert ds.targets[:, 1].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert ds.targets[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert ds.patient_ids == ("patient00001", "patient00001", "patient00002", "patient00003")
    assert ds.path(1).name == "view1_lateral.jpg" and ds.path(1).is_file()
    check_item(ds[1], 224, 2)


def test_chexpert_root_not_named_like_the_release(tmp_path: Path) -> None:
    # root "mychex" holds valid.csv and the CheXpert-v1.0-small/... tree: paths relative to root
    rows = [_CHEX_HEADER, _chex_row(7, "Frontal", {"Edema": "1.0"})]
    root = tmp_path / "mychex"
    _make_chexpert(root, rows)
    (root / "CheXpert-v1.0-small" / "valid.csv").rename(root / "valid.csv")
    ds = CheXpertDataset(root)
    assert ds.path(0) == root / rows[1].split(",")[0]
    assert ds.patient_ids == ("patient00007",)
    check_item(ds[0], 224, 5)


def test_chexpert_train_csv(tmp_path: Path) -> None:
    rows = [_CHEX_HEADER, _chex_row(9, "Frontal", {"Atelectasis": "1.0"}, split="train")]
    root = _make_chexpert(tmp_path, rows, name="train.csv")
    ds = CheXpertDataset(root, "train.csv", labels=None)
    assert ds.labels == CHEXPERT_SEED_FINDINGS
    assert ds.targets.tolist() == [[0.0, 0.0, 0.0, 1.0, 0.0]]


def test_chexpert_errors(chexpert: Path) -> None:
    with pytest.raises(ConfigError, match="'Cardiomegally'.*accepted: No Finding"):
        CheXpertDataset(chexpert, labels=["Cardiomegally"])
    with pytest.raises(ConfigError, match="uncertainty"):
        CheXpertDataset(chexpert, uncertainty="maybe")
    csv = chexpert / "valid.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].replace(",1.0,", ",2.0,", 1)  # Cardiomegaly of line 3
    write_csv(csv, lines)
    with pytest.raises(DataError) as info:
        CheXpertDataset(chexpert, frontal_only=False)
    msg = str(info.value)
    assert f"{csv}:3:" in msg and "'Cardiomegaly'" in msg and "'2.0'" in msg and "blank" in msg
    write_csv(csv, ["Path,Frontal/Lateral,Edema", "x.jpg,Frontal,1"])
    with pytest.raises(DataError, match=r"valid.csv:1: missing columns 'Cardiomegaly'"):
        CheXpertDataset(chexpert)
    with pytest.raises(DataError, match=r"valid.csv:2: Path 'x.jpg' has no patient id"):
        CheXpertDataset(chexpert, labels=["Edema"])
    write_csv(csv, [_CHEX_HEADER, _chex_row(99, "Frontal", {})])
    with pytest.raises(DataError, match=r"valid.csv:2: image file .*patient00099.* not found"):
        CheXpertDataset(chexpert)


# --------------------------------------------------------------------------------------------------
# NIHBoxes
# --------------------------------------------------------------------------------------------------

_NIH_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"


@pytest.fixture
def nih_csv(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "BBox_List_2017.csv",
        [
            _NIH_HEADER,
            "00000001_000.png,Atelectasis,512,256,256,128,,,",
            "00000001_000.png,Nodule,0.5,0.5,2.0,2.0,,,",
            "00000002_000.png,Cardiomegaly,225.084745762712,547.019216763771,86.7796610169491,"
            "79.1864406779661,,,",
        ],
    )


def test_nih_mapping(nih_csv: Path) -> None:
    boxes = NIHBoxes(nih_csv)
    assert len(boxes) == 2 and "00000001_000.png" in boxes
    assert boxes["00000001_000.png"] == [
        ("Atelectasis", (512.0, 256.0, 256.0, 128.0)),
        ("Nodule", (0.5, 0.5, 2.0, 2.0)),
    ]
    assert boxes.findings == ("Atelectasis", "Cardiomegaly", "Nodule")
    with pytest.raises(KeyError):
        boxes["nope.png"]


def test_nih_mask_geometry(nih_csv: Path) -> None:
    boxes = NIHBoxes(nih_csv, size=224)
    m = boxes.mask("00000001_000.png", "Atelectasis")
    assert m.dtype == torch.bool and m.shape == (1, 224, 224)
    # x 512..768 -> 112..168, y 256..384 -> 56..84 at scale 224/1024
    expected = torch.zeros(1, 224, 224, dtype=torch.bool)
    expected[0, 56:84, 112:168] = True
    assert torch.equal(m, expected)
    # full resolution: exactly the box's pixels
    full = boxes.mask("00000001_000.png", "atelectasis", size=1024)
    assert int(full.sum()) == 256 * 128 and bool(full[0, 256, 512]) and not bool(full[0, 255, 512])
    # a box under one output pixel still marks the pixel holding its centre
    tiny = boxes.mask("00000001_000.png", "Nodule", size=64)
    assert int(tiny.sum()) == 1 and bool(tiny[0, 0, 0])
    union = boxes.mask("00000001_000.png")
    assert torch.equal(union, m | boxes.mask("00000001_000.png", "Nodule"))
    # a known finding that is not on this image gives an empty mask
    assert not boxes.mask("00000002_000.png", "Nodule").any()
    odd = boxes.mask("00000002_000.png", size=224)
    rows, cols = torch.nonzero(odd[0], as_tuple=True)
    assert (
        abs(int(cols.min()) - 225.08 * 224 / 1024) <= 1
        and abs(int(rows.min()) - 547.02 * 0.21875) <= 1
    )
    with pytest.raises(UnknownLabelError, match="accepted: Atelectasis, Cardiomegaly, Nodule"):
        boxes.mask("00000001_000.png", "Mass")


def test_nih_errors(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "b.csv", [_NIH_HEADER, "a.png,Mass,1,2,3,,,,"])
    with pytest.raises(DataError, match=r"b.csv:2: box .* is not numeric"):
        NIHBoxes(bad)
    write_csv(bad, [_NIH_HEADER, "a.png,Mass,1,2,3,4", "a.png,Mass,1,2,0,4"])
    with pytest.raises(DataError, match=r"b.csv:3: box .* is invalid"):
        NIHBoxes(bad)
    write_csv(bad, ["Image,Label,x,y,w,h", "a.png,Mass,1,2,3,4"])
    with pytest.raises(DataError, match=r"b.csv:1: header"):
        NIHBoxes(bad)
    with pytest.raises(DataError, match="not found"):
        NIHBoxes(tmp_path / "absent.csv")


# --------------------------------------------------------------------------------------------------
# patient_split
# --------------------------------------------------------------------------------------------------


def test_patient_split_basic() -> None:
    ids = ["a", "b", "a", "c", "d", "b", "e", "a", "f", "g"]
    train, val = patient_split(ids, 0.3, seed=1)
    assert sorted(train + val) == list(range(len(ids)))
    assert not {ids[i] for i in train} & {ids[i] for i in val}
    assert len({ids[i] for i in val}) == 2  # round(0.3 * 7 patients)
    assert patient_split(ids, 0.3, seed=1) == (train, val)
    seeds = {tuple(patient_split(ids, 0.3, seed=s)[1]) for s in range(10)}
    assert len(seeds) > 1
    assert patient_split(ids, 0.0, seed=0) == (list(range(10)), [])


def test_patient_split_errors() -> None:
    for frac in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError):
            patient_split(["a", "b"], frac, seed=0)
    with pytest.raises(ConfigError, match="no patient_id column"):
        patient_split(None, 0.2, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        patient_split(["a", None], 0.2, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(0, 15), min_size=1, max_size=60),
    frac=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
    perm_seed=st.integers(0, 1000),
)
def test_patient_split_properties(ids: list[int], frac: float, seed: int, perm_seed: int) -> None:
    train, val = patient_split(ids, frac, seed)
    assert sorted(train + val) == list(range(len(ids))) and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    val_patients = {ids[i] for i in val}
    assert not {ids[i] for i in train} & val_patients  # patients kept whole
    n = len(set(ids))
    if n >= 2:
        assert train  # never everything in validation
    if frac > 0 and n >= 2:
        assert val
    # which patients go to validation does not depend on the item order
    order = np.random.default_rng(perm_seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    _, val2 = patient_split(shuffled, frac, seed)
    assert {shuffled[i] for i in val2} == val_patients


def test_phantoms_imported_lazily() -> None:
    """``import xcf.data`` must not import phantoms; ``xcf.data.phantoms`` must work once it exists."""
    code = (
        "import sys, xcf.data as d\n"
        "assert 'xcf.data.phantoms' not in sys.modules\n"
        "try:\n"
        "    import importlib.util as u\n"
        "    present = u.find_spec('xcf.data.phantoms') is not None\n"
        "except ModuleNotFoundError:\n"
        "    present = False\n"
        "if present:\n"
        "    assert d.phantoms is sys.modules['xcf.data.phantoms']\n"
        "else:\n"
        "    try:\n"
        "        d.phantoms\n"
        "    except AttributeError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError('phantoms should be missing')\n"
        "try:\n"
        "    d.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('unknown names must raise AttributeError')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert xcf_data.__dir__().count("phantoms") == 1
