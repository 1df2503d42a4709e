"""Packs: named, matched classifier + latent model (+ oracle) weight sets shipped in ``weights/``.

Weights are found in, in order: an explicit ``weights_dir`` argument, the ``XCF_WEIGHTS_DIR``
environment variable, the installed location (``<sys.prefix>/share/xcf/weights``, where a wheel puts
them), and the source checkout's ``weights/`` folder. ``weights/manifest.json`` lists every weight
file (component, constructor arguments, labels, input spec, sha256, training command, data, licence,
measured metrics) and every pack. Only ``.safetensors`` files are loaded, and only after their sha256
matches the manifest; nothing is unpickled and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import WeightsError

__all__ = ["Pack", "list_packs", "load_pack", "weights_dir", "read_manifest", "load_component",
           "sha256_file", "MANIFEST"]

MANIFEST = "manifest.json"
ENV = "XCF_WEIGHTS_DIR"
_REQUIRED_WEIGHT_KEYS = ("file", "sha256", "kind", "component")


def _candidates(explicit: str | os.PathLike | None) -> list[Path]:
    out: list[Path] = []
    if explicit is not None:
        return [Path(explicit)]
    if os.environ.get(ENV):
        return [Path(os.environ[ENV])]
    out.append(Path(sys.prefix) / "share" / "xcf" / "weights")
    out.append(Path(__file__).resolve().parents[1] / "weights")
    return out


def weights_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding ``manifest.json`` (see module docstring for the search order)."""
    cands = _candidates(explicit)
    for c in cands:
        if (c / MANIFEST).is_file():
            return c
    where = ", ".join(str(c) for c in cands)
    raise WeightsError(f"no weights manifest found (looked in {where}); set {ENV} or pass weights_dir")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: str | os.PathLike | None = None) -> tuple[Path, dict[str, Any]]:
    """Parse and validate ``manifest.json``; a malformed one is refused with its path and line."""
    d = weights_dir(directory)
    path = d / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}:{exc.lineno}: malformed manifest ({exc.msg})") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read manifest ({exc.strerror})") from None
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict) \
            or not isinstance(data.get("packs"), dict):
        raise WeightsError(f"{path}:1: malformed manifest (expected an object with 'weights' and 'packs')")
    lines = text.splitlines()

    def line_of(key: str) -> int:
        needle = f'"{key}"'
        for i, line in enumerate(lines, 1):
            if needle in line:
                return i
        return 1

    for wname, entry in data["weights"].items():
        if not isinstance(entry, dict):
            raise WeightsError(f"{path}:{line_of(wname)}: weights entry '{wname}' is not an object")
        missing = [k for k in _REQUIRED_WEIGHT_KEYS if k not in entry]
        if missing:
            raise WeightsError(f"{path}:{line_of(wname)}: weights entry '{wname}' lacks {', '.join(missing)}")
        if not str(entry["file"]).endswith(".safetensors"):
            raise WeightsError(
                f"{path}:{line_of(wname)}: weights entry '{wname}' file {entry['file']!r} is not a .safetensors file; "
                "only safetensors are loaded")
        if Path(entry["file"]).name != entry["file"]:
            raise WeightsError(f"{path}:{line_of(wname)}: weights entry '{wname}' file must be a bare file name")
    for pname, pack in data["packs"].items():
        if not isinstance(pack, dict):
            raise WeightsError(f"{path}:{line_of(pname)}: pack '{pname}' is not an object")
        for role in ("classifier", "latent", "oracle", "inpainter"):
            ref = pack.get(role)
            if ref is not None and ref not in data["weights"]:
                raise WeightsError(f"{path}:{line_of(pname)}: pack '{pname}' {role} refers to unknown weights '{ref}'")
        alts = pack.get("latents", [])
        if not isinstance(alts, list) or not all(isinstance(a, str) for a in alts):
            raise WeightsError(f"{path}:{line_of(pname)}: pack '{pname}' latents must be a list of weights names")
        for ref in alts:
            if ref not in data["weights"]:
                raise WeightsError(f"{path}:{line_of(pname)}: pack '{pname}' latents refers to unknown weights '{ref}'")
    return d, data


def load_component(name: str, directory: str | os.PathLike | None = None, *, registry=None):
    """Build the component of manifest entry ``name`` and load its verified safetensors weights."""
    from safetensors.torch import load_file

    from .registry import get_registry

    d, data = read_manifest(directory)
    if name not in data["weights"]:
        known = ", ".join(sorted(data["weights"])) or "(none)"
        raise WeightsError(f"unknown weights '{name}'; in {d / MANIFEST}: {known}")
    entry = data["weights"][name]
    file = d / entry["file"]
    if not file.is_file():
        raise WeightsError(f"{file}: weights file missing (listed as '{name}' in {d / MANIFEST})")
    digest = sha256_file(file)
    if digest != entry["sha256"]:
        raise WeightsError(
            f"{file}: sha256 {digest[:12]}... does not match the manifest's {str(entry['sha256'])[:12]}...; "
            "the file is corrupt or was replaced: retrain or restore it")
    reg = registry or get_registry()
    component = reg.create(entry["kind"], entry["component"], **entry.get("args", {}))
    try:
        state = load_file(str(file))
    except Exception as exc:
        raise WeightsError(f"{file}: not a readable safetensors file ({exc})") from None
    try:
        component.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{file}: weights do not fit {entry['component']} with {entry.get('args', {})}: {first}") from None
    component.eval()
    component.xcf_weights = {"name": name, "file": entry["file"], "sha256": digest}
    return component


@dataclass
class Pack:
    """A matched classifier + latent model (+ oracle, + inpainter). Components load on first access."""

    name: str
    entry: dict[str, Any]
    directory: Path
    manifest: dict[str, Any] = field(repr=False)
    _alt_latents: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def labels(self) -> tuple[str, ...]:
        labs = self.entry.get("labels") or self.manifest["weights"][self.entry["classifier"]].get("labels", [])
        return tuple(labs)

    @property
    def description(self) -> str:
        return str(self.entry.get("description", ""))

    @cached_property
    def classifier(self):
        return load_component(self.entry["classifier"], self.directory)

    @cached_property
    def latent(self):
        return load_component(self.entry["latent"], self.directory)

    @property
    def latent_names(self) -> tuple[str, ...]:
        """The weights names of this pack's latent models: the default (:attr:`latent`) first,
        then the alternatives listed under ``latents`` in the manifest (e.g. a VAE)."""
        default = self.entry["latent"]
        return (default, *(a for a in self.entry.get("latents", []) if a != default))

    def load_latent(self, name: str):
        """The latent model ``name`` of :attr:`latent_names`, loaded and verified (cached)."""
        if name not in self.latent_names:
            raise WeightsError(f"pack '{self.name}' has no latent model '{name}'; "
                               f"its latent models: {', '.join(self.latent_names)}")
        if name == self.entry["latent"]:
            return self.latent
        if name not in self._alt_latents:
            self._alt_latents[name] = load_component(name, self.directory)
        return self._alt_latents[name]

    @cached_property
    def oracle(self):
        ref = self.entry.get("oracle")
        return load_component(ref, self.directory) if ref else None

    @cached_property
    def inpainter(self):
        """The pack's inpainter (a latent model with ``inpaint(x, hole)``, trained on films
        without findings: the content of the ``local-fill`` method), or ``None``."""
        ref = self.entry.get("inpainter")
        return load_component(ref, self.directory) if ref else None

    #: The manifest entry of the content a method's ``latent_role`` needs besides the latent model.
    CONTENT = {"inpainter": "inpainter", "exemplar": "exemplars"}

    def has_content_for(self, method: Any) -> bool:
        """Whether the manifest names the content ``method`` searches with (an inpainter for
        ``local-fill``, a bank of films for ``local-exemplar``; the latent model for the others),
        without loading it."""
        key = self.CONTENT.get(getattr(method, "latent_role", "latent"))
        return key is None or bool(self.entry.get(key))

    @cached_property
    def exemplars(self):
        """The pack's bank of real films without its finding (an ``exemplar-bank`` latent model:
        the content of the ``local-exemplar`` method), or ``None`` when the manifest names none.

        The manifest's ``exemplars`` entry names the data folder (as the training commands do), the
        label the films must not have, the split, and the weights whose training rows are left out
        (the oracle's: a judge must not be shown a film it was trained on); or ``phantom:N:SEED``,
        phantoms drawn without findings from a dataset seed no training or test set draws from. The folder is found as
        ``$XCF_DATA_DIR/<its name>``, else at its path from the current directory, else from the
        folder above the weights. Films are read in place, once per process.

        Raises:
            ConfigError: The data folder is not found (the message says where it was looked for).
        """
        spec = self.entry.get("exemplars")
        if not spec:
            return None
        from .errors import ConfigError
        from .registry import create

        size = int(getattr(self.classifier, "input_size", 224))
        component = spec.get("component", "exemplar-bank")
        if str(spec["data"]).startswith("phantom:"):  # generated films: nothing to find on disk
            return create("latent", component, root=str(spec["data"]), input_size=size)
        data = Path(spec["data"])
        looked = [Path(os.environ["XCF_DATA_DIR"]) / data.name] if os.environ.get("XCF_DATA_DIR") else []
        looked += [data, self.directory.parent / data]
        root = next((d for d in looked if (d / "labels.csv").is_file()), None)
        if root is None:
            raise ConfigError(
                f"pack '{self.name}' reads its films without {spec['without']!r} from {data.name} (labels.csv), "
                f"not found at {', '.join(map(str, looked))}; set XCF_DATA_DIR to the folder that holds "
                f"{data.name}, or pick a method without them (xcf.list_methods())")
        exclude: list[int] = []
        if spec.get("exclude_training_of"):
            exclude = self._training_rows(root, spec)
        return create("latent", component, root=str(root), without=spec["without"],
                      split=spec.get("split", "train"), exclude=exclude, limit=spec.get("limit"),
                      input_size=size)

    def _training_rows(self, root: Path, spec: dict[str, Any]) -> list[int]:
        """The rows of ``spec['split']`` that the weights ``spec['exclude_training_of']`` were trained
        or validated on (from the seed and ``--limit`` of their recorded command)."""
        import shlex

        from .data import FolderDataset
        from .train.trainer import train_val_indices

        entry = self.manifest["weights"][spec["exclude_training_of"]]
        words = shlex.split(entry.get("command", ""))
        opt = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
        ds = FolderDataset(root, labels=list(entry.get("labels", [spec["without"]])),
                           split=spec.get("split", "train"), check_files=False)
        limit = int(opt["--limit"]) if "--limit" in opt else None
        tr, va = train_val_indices(ds, float(opt.get("--val-fraction", 0.1)), int(entry.get("seed", 0)), limit)
        return sorted(set(tr) | set(va))

    def latent_for(self, method: Any):
        """The model ``method`` searches with when none is given: the inpainter for a method whose
        ``latent_role`` is ``"inpainter"`` (``local-fill``), the bank of films without the finding
        for ``"exemplar"`` (``local-exemplar``), else the default latent model.

        Raises:
            ConfigError: The method needs an inpainter or a bank the pack has none of.
        """
        role = getattr(method, "latent_role", "latent")
        if role == "exemplar":
            if self.exemplars is None:
                from .errors import ConfigError

                raise ConfigError(
                    f"method {method.name!r} needs a bank of films without the finding and pack '{self.name}' "
                    "has none (its manifest's 'exemplars'); pass latent=create('latent', 'exemplar-bank', "
                    "root=..., without=...) or pick another method (xcf.list_methods())")
            return self.exemplars
        if role != "inpainter":
            return self.latent
        if self.inpainter is None:
            from .errors import ConfigError

            raise ConfigError(
                f"method {method.name!r} needs an inpainter and pack '{self.name}' has none; "
                f"train one (xcf train inpainter --pack {self.name} --role inpainter ...) or "
                "pick another method (xcf.list_methods())")
        return self.inpainter

    def weights(self) -> dict[str, dict[str, Any]]:
        """Manifest entries of this pack's weights, by role (the alternative latent models as
        ``"latent:NAME"``)."""
        out = {role: self.manifest["weights"][ref] for role in ("classifier", "latent", "oracle", "inpainter")
               if (ref := self.entry.get(role))}
        out.update({f"latent:{n}": self.manifest["weights"][n] for n in self.latent_names[1:]})
        return out


def list_packs(weights_dir_: str | os.PathLike | None = None) -> list[str]:
    """Names of the packs in the manifest (empty when no manifest is found)."""
    try:
        _, data = read_manifest(weights_dir_)
    except WeightsError:
        return []
    return sorted(data["packs"])


def load_pack(name: str, weights_dir_: str | os.PathLike | None = None) -> Pack:
    """The pack ``name`` (components are built and verified lazily, on first access)."""
    d, data = read_manifest(weights_dir_)
    if name not in data["packs"]:
        known = ", ".join(sorted(data["packs"])) or "(none)"
        raise WeightsError(f"unknown pack '{name}'; available packs: {known}")
    entry = data["packs"][name]
    missing = [role for role in ("classifier", "latent") if not entry.get(role)]
    if missing:
        raise WeightsError(f"pack '{name}' in {d / MANIFEST} is incomplete: no {' or '.join(missing)} weights; "
                           "train them with `xcf train ... --pack` first")
    return Pack(name, entry, d, data)
