"""Opening TurboVideo adapter files and checking the metadata each carries: its kind and format version."""
from .checkpoint_files import FileRole, open_safetensors

KIND_KEY = "turbovideo_adapter"
VERSION_KEY = "format_version"


def check_adapter_metadata(at: str, metadata: dict | None, kind: str, version: str, label: str, writer: str,
                           doc: str) -> dict:
    """The file's metadata, or a ValueError that names what the file is and how to get the right one.

    `at` names the file in the message (checkpoint_files.where: "input: 'name'")."""
    metadata = metadata or {}
    found_kind = metadata.get(KIND_KEY)
    if found_kind != kind:
        found = f"{KIND_KEY}={found_kind!r}" if found_kind else f"no {KIND_KEY} metadata"
        raise ValueError(f"{at} is not a {label} ({found}); pick a file written by {writer} "
                         f"(metadata {KIND_KEY}='{kind}', {doc})")
    if metadata.get(VERSION_KEY) != version:
        raise ValueError(f"{at}: {label} format_version {metadata.get(VERSION_KEY)!r} is not supported "
                         f"(this TurboVideo reads version {version}); update TurboVideo")
    return metadata


def adapter_role(input_name: str, label: str, writer: str, doc: str) -> FileRole:
    return FileRole(input_name, f"a {label}", f"(a .safetensors file written by {writer}, {doc})")


def open_adapter(path, label: str, writer: str, doc: str, input_name: str):
    """The safetensors handle of an adapter file; an empty, truncated or wrong-kind file is a clear ValueError."""
    return open_safetensors(path, adapter_role(input_name, label, writer, doc))
