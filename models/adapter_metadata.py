"""Opening TurboVideo adapter files and checking the metadata each carries: its kind and format version."""
from safetensors import safe_open

KIND_KEY = "turbovideo_adapter"
VERSION_KEY = "format_version"


def check_adapter_metadata(path, metadata: dict | None, kind: str, version: str, label: str, writer: str,
                           doc: str) -> dict:
    """The file's metadata, or a ValueError that names what the file is and how to get the right one."""
    metadata = metadata or {}
    found_kind = metadata.get(KIND_KEY)
    if found_kind != kind:
        found = f"{KIND_KEY}={found_kind!r}" if found_kind else f"no {KIND_KEY} metadata"
        raise ValueError(f"{path} is not a {label} ({found}); pick a file written by {writer} "
                         f"(metadata {KIND_KEY}='{kind}', {doc})")
    if metadata.get(VERSION_KEY) != version:
        raise ValueError(f"{path}: {label} format_version {metadata.get(VERSION_KEY)!r} is not supported "
                         f"(this TurboVideo reads version {version}); update TurboVideo")
    return metadata


def open_adapter(path, label: str, writer: str, doc: str):
    """safe_open of an adapter file; a file that is not safetensors gives a ValueError saying so."""
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors raises its own SafetensorError for a bad header
        raise ValueError(f"{path} is not a {label}: not a readable safetensors file ({error}); "
                         f"pick a file written by {writer} ({doc})") from None
