"""LoRA weights checked before they are trusted, for `e2wm export`, `e2wm merge` and `e2wm eval --adapter`.

A checkpoint's or an adapter's tensors must hold LoRA pairs (A: r × in, B: out × r, r the config's),
every one finite floating-point data; once peft has put an adapter on its base model, the adapter's
keys must be exactly those of the modules peft wrapped. peft itself only warns about missing keys, so
a wrong adapter would silently leave those modules at their initial B = 0: a "merge" equal to the base.
"""
from __future__ import annotations

import re
from pathlib import Path

from e2wm.errors import E2WMError

WEIGHTS = "adapter_model.safetensors"
WEIGHTS_BIN = "adapter_model.bin"     # older peft's pickle; loaded weights-only
# peft's names, adapter name removed: MODULE.lora_A.weight (linear, conv), MODULE.lora_embedding_A (embedding)
_FACTOR = re.compile(r"(?P<module>.+)\.lora_(?P<kind>embedding_)?(?P<ab>[AB])(?:\.weight)?")


def read_config(adapter_dir, field: str = "--adapter") -> tuple[Path, dict]:
    """(folder, its adapter_config.json as a dict): a missing folder or file, bad JSON or a non-object is
    one line naming `field` and the folder."""
    from e2wm.files import input_dir, read_object

    path = input_dir(adapter_dir, f"adapter directory ({field})")
    config = path / "adapter_config.json"
    if not config.is_file():
        raise E2WMError(f"{field} {path}: not a LoRA adapter (no adapter_config.json)")
    return path, read_object(config, "PEFT adapter config", before=f"{field} {path}: ")


def check_pairs(shapes: dict[str, tuple], r: int | None, where: str) -> None:
    """`shapes` ({key: shape}) holds at least one LoRA pair, each lora_A has its lora_B and back, and
    A is r × in, B is out × r (`r` None: a rank_pattern; A's and B's must still agree)."""
    pairs: dict[tuple[str, str], dict[str, tuple[str, tuple]]] = {}
    for key, shape in shapes.items():
        m = _FACTOR.fullmatch(key)
        if m:
            pairs.setdefault((m["module"], m["kind"] or ""), {})[m["ab"]] = (key, tuple(shape))
    if not pairs:
        raise E2WMError(f"{where}: holds no LoRA weights (no lora_A / lora_B tensors among {len(shapes)})")
    for (_, kind), ab in sorted(pairs.items()):
        if len(ab) < 2:
            have, lack = ("A", "B") if "A" in ab else ("B", "A")
            raise E2WMError(f"{where}: {ab[have][0]} has no lora_{kind}{lack} to pair with")
        (ka, a), (kb, b) = ab["A"], ab["B"]
        if len(a) < 2 or len(b) < 2 or 0 in a or 0 in b:
            raise E2WMError(f"{where}: {ka} {list(a)} and {kb} {list(b)} are not LoRA factors "
                            f"(A is r × in, B is out × r)")
        if a[0] != b[1]:
            raise E2WMError(f"{where}: {ka} has rank {a[0]} but {kb} has rank {b[1]} (A is r × in, B is out × r)")
        if r is not None and a[0] != r:
            raise E2WMError(f"{where}: {ka} has rank {a[0]}, the config's r is {r}")


def check_finite(name: str, t, where: str) -> None:
    import torch
    if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
        raise E2WMError(f"{where}: {name} is not finite floating-point data (NaN, Infinity or integers)")


def check_adapter(adapter_dir, cfg: dict, field: str = "--adapter") -> dict[str, tuple]:
    """{key: shape} of a PEFT LoRA adapter directory whose adapter_config.json is `cfg`, checked without
    any base model: r, the weights file whole, every tensor finite, the LoRA pairs (`check_pairs`)."""
    from safetensors import SafetensorError, safe_open

    from e2wm.files import input_file

    from peft import LoraConfig

    d = Path(adapter_dir)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise E2WMError(f"{field} {d}: adapter_config.json: peft_type is {cfg['peft_type']!r}; only LoRA adapters "
                        f"are supported")
    r = cfg.get("r", LoraConfig.r)   # peft's default where the config leaves it out
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise E2WMError(f"{field} {d}: adapter_config.json: r is {r!r}, not a positive integer")
    pattern = cfg.get("rank_pattern") or {}
    if not isinstance(pattern, dict):
        raise E2WMError(f"{field} {d}: adapter_config.json: rank_pattern is not a mapping of modules to ranks")
    f = d / WEIGHTS
    if not f.exists() and (d / WEIGHTS_BIN).exists():
        return _check_bin(d / WEIGHTS_BIN, None if pattern else r, f"{field} {d}: {WEIGHTS_BIN}")
    where = f"{field} {d}: {WEIGHTS}"
    try:
        input_file(f, "adapter weights")
    except E2WMError as e:
        raise E2WMError(f"{field} {d}: {e}; not a PEFT adapter directory") from None
    try:
        shapes = {}
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                t = fh.get_tensor(k)
                check_finite(k, t, where)
                shapes[k] = tuple(t.shape)
    except (OSError, SafetensorError, RuntimeError, TypeError) as e:   # truncated, garbage, a dtype torch lacks
        raise E2WMError(f"{where}: unreadable safetensors ({(str(e).strip().splitlines() or [type(e).__name__])[0]})"
                        ) from None
    check_pairs(shapes, None if pattern else r, where)
    return shapes


def _check_bin(f: Path, r: int | None, where: str) -> dict[str, tuple]:
    import pickle

    import torch
    try:
        tensors = torch.load(f, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise E2WMError(f"{where}: unreadable ({(str(e).strip().splitlines() or [type(e).__name__])[0]})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise E2WMError(f"{where}: not a mapping of names to tensors")
    for k, t in tensors.items():
        check_finite(k, t, where)
    shapes = {k: tuple(t.shape) for k, t in tensors.items()}
    check_pairs(shapes, r, where)
    return shapes


def load_onto(model, adapter_dir, shapes: dict[str, tuple], where: str):
    """`PeftModel.from_pretrained(model, adapter_dir)` whose LoRA keys are exactly `shapes`' (from
    `check_adapter`): peft would only warn about missing ones and leave those modules at B = 0, and
    would ignore ones for modules the base lacks. peft's own exceptions pass through."""
    import warnings

    from peft import PeftModel, get_peft_model_state_dict

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found missing adapter keys")   # an error below instead
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    expected = {k for k in get_peft_model_state_dict(peft_model, save_embedding_layers=False) if _FACTOR.fullmatch(k)}
    got = {k for k in shapes if _FACTOR.fullmatch(k)}
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        part = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        part += [f"{len(unexpected)} for modules the base model lacks (e.g. {unexpected[0]})"] if unexpected else []
        raise E2WMError(f"{where}: its LoRA weights do not match the base model's modules: {'; '.join(part)}")
    return peft_model
