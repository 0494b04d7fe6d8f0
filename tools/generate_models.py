"""Generate openecr's ECR wire models from botocore's ECR service model.

Usage::

    python tools/generate_models.py [OUTPUT_DIR]

OUTPUT_DIR defaults to ``src/openecr/models`` of this checkout. Three files are written:

* ``_shapes.py``: one ``msgspec.Struct`` per structure shape reached by the 41 operations,
  ``Literal`` aliases for the enum shapes, and the operation -> request/response struct maps;
* ``_catalog.py``: plain data (shapes, constraints, operations, errors) that the server's
  request validator compiles;
* ``__init__.py``: the re-exports, with ``__all__``.

botocore is a development-only dependency: the generated files are committed, and
``tests/unit/test_models_generated.py`` checks that they match this generator's output.
The output depends only on the model's content (recorded as a sha256 in every header), so
running the generator twice gives identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import keyword
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

# The operation set of the ECR model as of September 2023 (see spec/ecr-api.md).
OPERATIONS: tuple[str, ...] = (
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "BatchGetRepositoryScanningConfiguration",
    "CompleteLayerUpload",
    "CreatePullThroughCacheRule",
    "CreateRepository",
    "DeleteLifecyclePolicy",
    "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy",
    "DeleteRepository",
    "DeleteRepositoryPolicy",
    "DescribeImageReplicationStatus",
    "DescribeImageScanFindings",
    "DescribeImages",
    "DescribePullThroughCacheRules",
    "DescribeRegistry",
    "DescribeRepositories",
    "GetAuthorizationToken",
    "GetDownloadUrlForLayer",
    "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview",
    "GetRegistryPolicy",
    "GetRegistryScanningConfiguration",
    "GetRepositoryPolicy",
    "InitiateLayerUpload",
    "ListImages",
    "ListTagsForResource",
    "PutImage",
    "PutImageScanningConfiguration",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "PutRegistryPolicy",
    "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration",
    "SetRepositoryPolicy",
    "StartImageScan",
    "StartLifecyclePolicyPreview",
    "TagResource",
    "UntagResource",
    "UploadLayerPart",
)

MODEL_RELPATH = "data/ecr/2015-09-21/service-2.json.gz"
LINE_LENGTH = 100
# Python type of each scalar model type in the structs.
SCALAR_TYPES = {
    "string": "str",
    "integer": "int",
    "long": "int",
    "boolean": "bool",
    "double": "float",
    "float": "float",
    "timestamp": "float",
    "blob": "bytes",
}
# Names used in the struct annotations, which a field name must not shadow.
ANNOTATION_NAMES = {"str", "int", "float", "bool", "bytes", "list", "dict", "None", "msgspec"}
# Names the generated modules define besides the shapes; a shape must not clash with them.
RESERVED_NAMES = {
    "msgspec",
    "Literal",
    "TypeAlias",
    "Final",
    "REQUEST_TYPES",
    "RESPONSE_TYPES",
    "SHAPES",
    "OPERATIONS",
    "Shape",
    "Member",
    "Operation",
    "MODEL_SHA256",
    "TARGET_PREFIX",
    "API_VERSION",
}


def model_path() -> Path:
    """Where the installed botocore keeps the ECR service model."""
    import botocore

    return Path(botocore.__file__).parent / MODEL_RELPATH


def load_model(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed model and the sha256 of its JSON text."""
    raw = gzip.decompress(path.read_bytes())
    return json.loads(raw), hashlib.sha256(raw).hexdigest()


def snake_case(name: str) -> str:
    """``imageSizeInBytes`` -> ``image_size_in_bytes``, ``Key`` -> ``key``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def plain_doc(text: str | None, sentences: int = 2, limit: int = 300) -> str:
    """First sentence or two of a model documentation string, without HTML."""
    if not text:
        return ""
    s = re.sub(r"<[^>]+>", " ", text)
    s = html.unescape(s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([.,;:)])", r"\1", s)
    s = re.sub(r"\(\s+", "(", s)
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", s)
    out = parts[0]
    if sentences > 1 and len(parts) > 1 and len(out) + len(parts[1]) < limit:
        out = f"{out} {parts[1]}"
    if len(out) > limit:
        out = out[: limit - 3].rstrip() + "..."
    return out


class Model:
    """The part of the ECR model that the 41 operations reach."""

    def __init__(self, model: dict[str, Any], digest: str) -> None:
        self.raw = model
        self.digest = digest
        self.shapes: dict[str, Any] = model["shapes"]
        self.operations: dict[str, Any] = {}
        for name in OPERATIONS:
            if name not in model["operations"]:
                raise SystemExit(f"operation {name} missing from the model")
            self.operations[name] = model["operations"][name]
        # Shapes that become structs: reached from inputs and outputs.
        self.wire: set[str] = set()
        # Shapes described in the catalog: the above plus the errors and what they reach.
        self.catalog: set[str] = set()
        self.errors: set[str] = set()
        for op in self.operations.values():
            self._reach(op["input"]["shape"], self.wire)
            self._reach(op["output"]["shape"], self.wire)
            for err in op.get("errors", []):
                self.errors.add(err["shape"])
        self.catalog |= self.wire
        for err in self.errors:
            self._reach(err, self.catalog)
        self.input_of = {op["input"]["shape"]: n for n, op in self.operations.items()}
        self.output_of = {op["output"]["shape"]: n for n, op in self.operations.items()}
        self._check_names()

    def _reach(self, name: str, seen: set[str]) -> None:
        if name in seen:
            return
        seen.add(name)
        shape = self.shapes[name]
        for member in shape.get("members", {}).values():
            self._reach(member["shape"], seen)
        for part in ("member", "key", "value"):
            if part in shape:
                self._reach(shape[part]["shape"], seen)

    def structs(self) -> list[str]:
        return sorted(
            n for n in self.wire if self.shapes[n]["type"] == "structure" and n not in self.errors
        )

    def enums(self) -> list[str]:
        return sorted(n for n in self.wire if "enum" in self.shapes[n])

    def _check_names(self) -> None:
        for name in self.catalog:
            if name in RESERVED_NAMES or keyword.iskeyword(name):
                raise SystemExit(f"shape name {name} clashes with a generated name")
        for name in self.structs():
            attrs = [snake_case(m) for m in self.shapes[name]["members"]]
            if len(set(attrs)) != len(attrs):
                raise SystemExit(f"{name}: two members map to the same attribute name")
            for attr in attrs:
                # A field named like a builtin type would shadow it in later annotations.
                if keyword.iskeyword(attr) or attr in ANNOTATION_NAMES:
                    raise SystemExit(f"{name}.{attr} is not usable as a field name")
        for name in self.catalog:
            pattern = self.shapes[name].get("pattern")
            if pattern is not None:
                re.compile(pattern)

    def python_type(self, name: str) -> str:
        shape = self.shapes[name]
        kind = shape["type"]
        if kind == "structure":
            return name
        if kind == "list":
            return f"list[{self.python_type(shape['member']['shape'])}]"
        if kind == "map":
            key = self.python_type(shape["key"]["shape"])
            if key != "str":
                raise SystemExit(f"{name}: map keys must be strings")
            return f"dict[str, {self.python_type(shape['value']['shape'])}]"
        return SCALAR_TYPES[kind]

    def struct_doc(self, name: str) -> str:
        doc = plain_doc(self.shapes[name].get("documentation"))
        if name in self.input_of:
            op = self.input_of[name]
            op_doc = plain_doc(self.operations[op].get("documentation"), sentences=1)
            return doc or f"Request of ``{op}``: {op_doc}".rstrip(": ")
        if name in self.output_of:
            return doc or f"Response of ``{self.output_of[name]}``."
        return doc or f"The ``{name}`` shape of the ECR model."


def header(digest: str, what: str) -> str:
    return (
        f'"""{what}\n\n'
        "Generated by tools/generate_models.py from botocore's ECR service model\n"
        f"ecr/2015-09-21 (sha256 {digest}).\n"
        "Do not edit by hand: rerun the generator.\n"
        '"""\n'
    )


def docstring(text: str, indent: str) -> str:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text = text[:-1] + '\\"'
    width = LINE_LENGTH - len(indent) - 6
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)
    if len(lines) <= 1:
        return f'{indent}"""{text}"""\n'
    body = "".join(f"{indent}{line}\n" for line in lines[1:])
    return f'{indent}"""{lines[0]}\n{body}{indent}"""\n'


# Not an ECR shape: what the SDK attaches to every response it returns. The server never
# sets it, so it is never encoded on the wire.
RESPONSE_METADATA = '''

class ResponseMetadata(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How a response arrived: set by the SDK on every response it returns.

    ``raw_response`` is the ``httpx.Response``; ``retry_attempts`` counts the retries made.
    """

    request_id: str | None = None
    http_status_code: int | None = None
    headers: dict[str, str] = {}
    retry_attempts: int = 0
    raw_response: Any = None
'''


def render_shapes(model: Model) -> str:
    out: list[str] = [
        header(model.digest, "The ECR wire shapes as msgspec structs (generated)."),
        "\n",
        "from __future__ import annotations\n\n",
        "from typing import Any, Literal, TypeAlias\n\n",
        "import msgspec\n\n",
    ]
    structs = model.structs()
    enums = model.enums()
    names = sorted([*structs, *enums, "REQUEST_TYPES", "RESPONSE_TYPES", "ResponseMetadata"])
    out.append("__all__ = [\n")
    out.extend(f'    "{n}",\n' for n in names)
    out.append("]\n\n")
    out.append("# Enum shapes. Struct fields are typed `str` so that values added by newer\n")
    out.append("# servers never break decoding; these aliases document the known values.\n")
    for name in enums:
        values = ", ".join(json.dumps(v) for v in model.shapes[name]["enum"])
        line = f"{name}: TypeAlias = Literal[{values}]\n"
        if len(line) > LINE_LENGTH:
            items = "".join(f"    {json.dumps(v)},\n" for v in model.shapes[name]["enum"])
            line = f"{name}: TypeAlias = Literal[\n{items}]\n"
        out.append(line)
    out.append(RESPONSE_METADATA)
    for name in structs:
        shape = model.shapes[name]
        out.append("\n\n")
        out.append(f"class {name}(msgspec.Struct, kw_only=True, omit_defaults=True):\n")
        out.append(docstring(model.struct_doc(name), "    "))
        members = shape.get("members", {})
        if members:
            out.append("\n")
        for wire, member in members.items():
            attr = snake_case(wire)
            typ = model.python_type(member["shape"])
            if attr == wire:
                out.append(f"    {attr}: {typ} | None = None\n")
            else:
                field = f"msgspec.field(default=None, name={_str(wire)})"
                out.append(f"    {attr}: {typ} | None = {field}\n")
        if name in model.output_of:
            out.append(
                "    response_metadata: ResponseMetadata | None = msgspec.field(\n"
                '        default=None, name="ResponseMetadata"\n'
                "    )\n"
            )
    for table, key in (("REQUEST_TYPES", "input"), ("RESPONSE_TYPES", "output")):
        which = "request" if key == "input" else "response"
        out.append("\n")
        out.append(f"# Operation name -> its {which} struct.\n")
        out.append(f"{table}: dict[str, type[msgspec.Struct]] = {{\n")
        for op in OPERATIONS:
            out.append(f'    "{op}": {model.operations[op][key]["shape"]},\n')
        out.append("}\n")
    return "".join(out)


def _call(func: str, args: list[str], indent: str) -> str:
    """A call laid out the way ruff format lays it out: one line if it fits."""
    line = f"{indent}{func}({', '.join(args)}),\n"
    if len(line) <= LINE_LENGTH + 1 or not args:
        return line
    inner = "".join(_kwarg(a, indent + "    ") for a in args)
    return f"{indent}{func}(\n{inner}{indent}),\n"


def _kwarg(arg: str, indent: str) -> str:
    """One argument line; a tuple too long for the line gets one item per line."""
    line = f"{indent}{arg},\n"
    key, sep, value = arg.partition("=(")
    if len(line) <= LINE_LENGTH + 1 or not sep:
        return line
    items = "".join(f"{indent}    {v},\n" for v in value.rstrip(",)").split(", "))
    return f"{indent}{key}=(\n{items}{indent}),\n"


def _str(value: str) -> str:
    return json.dumps(value)


def _tuple(values: list[str]) -> str:
    if not values:
        return "()"
    if len(values) == 1:
        return f"({values[0]},)"
    return f"({', '.join(values)})"


def render_catalog(model: Model) -> str:
    out: list[str] = [
        header(model.digest, "The ECR shapes and operations as plain data (generated)."),
        "\n",
        "{noqa}from __future__ import annotations\n\n",
        "from dataclasses import dataclass\n",
        "from typing import Final\n\n",
        "__all__ = [\n",
        '    "API_VERSION",\n',
        '    "MODEL_SHA256",\n',
        '    "OPERATIONS",\n',
        '    "SHAPES",\n',
        '    "TARGET_PREFIX",\n',
        '    "Member",\n',
        '    "Operation",\n',
        '    "Shape",\n',
        "]\n\n",
        f"MODEL_SHA256: Final = {_str(model.digest)}\n",
        f"API_VERSION: Final = {_str(model.raw['metadata']['apiVersion'])}\n",
        "# X-Amz-Target is TARGET_PREFIX + '.' + operation name.\n",
        f"TARGET_PREFIX: Final = {_str(model.raw['metadata']['targetPrefix'])}\n",
        CATALOG_CLASSES,
        "\n",
        "SHAPES: Final[dict[str, Shape]] = {\n",
    ]
    for name in sorted(model.catalog):
        shape = model.shapes[name]
        args = [_str(shape["type"])]
        members = shape.get("members")
        if shape.get("exception"):
            args.append("error=True")
        if shape.get("required"):
            args.append(f"required={_tuple([_str(r) for r in shape['required']])}")
        for part in ("member", "key", "value"):
            if part in shape:
                args.append(f"{part}={_str(shape[part]['shape'])}")
        for bound in ("min", "max"):
            if bound in shape:
                value = shape[bound]
                if not isinstance(value, int):
                    raise SystemExit(f"{name}: non-integer {bound}")
                args.append(f"{bound}={value}")
        if "pattern" in shape:
            args.append(f"pattern={_str(shape['pattern'])}")
        if "enum" in shape:
            args.append(f"enum={_tuple([_str(v) for v in shape['enum']])}")
        if not members:
            out.append(_call(f"{_str(name)}: Shape", args, "    "))
            continue
        if len(members) == 1:
            # A one-element tuple's trailing comma is not "magic": it stays on one line.
            ((wire, member),) = members.items()
            margs = [_str(snake_case(wire)), _str(wire), _str(member["shape"])]
            inline = f"members=(Member({', '.join(margs)}),)"
            if len(f"        {inline},") <= LINE_LENGTH:
                out.append(_call(f"{_str(name)}: Shape", [*args, inline], "    "))
                continue
        out.append(f"    {_str(name)}: Shape(\n")
        out.extend(_kwarg(a, "        ") for a in args)
        out.append("        members=(\n")
        for wire, member in members.items():
            margs = [_str(snake_case(wire)), _str(wire), _str(member["shape"])]
            out.append(_call("Member", margs, "            "))
        out.append("        ),\n")
        out.append("    ),\n")
    out.append("}\n\n")
    out.append("OPERATIONS: Final[dict[str, Operation]] = {\n")
    for op_name in OPERATIONS:
        op = model.operations[op_name]
        errors = [_str(e["shape"]) for e in op.get("errors", [])]
        out.append(f"    {_str(op_name)}: Operation(\n")
        out.append(f"        name={_str(op_name)},\n")
        out.append(f"        input={_str(op['input']['shape'])},\n")
        out.append(f"        output={_str(op['output']['shape'])},\n")
        if len(errors) == 1:
            out.append(f"        errors={_tuple(errors)},\n")
        else:
            out.append("        errors=(\n")
            out.extend(f"            {e},\n" for e in errors)
            out.append("        ),\n")
        out.append("    ),\n")
    out.append("}\n")
    text = "".join(out)
    # Long patterns cannot be split. ruff's E501 already lets a long line through when it
    # is a single word (``pattern="..."``); silence it only for a pattern with spaces.
    too_long = any(len(line) > LINE_LENGTH and " " in line.strip() for line in text.splitlines())
    return text.replace("{noqa}", "# ruff: noqa: E501\n" if too_long else "", 1)


CATALOG_CLASSES = '''

@dataclass(frozen=True, slots=True)
class Member:
    """One member of a structure shape."""

    attr: str
    """Python attribute name on the struct (snake_case)."""
    wire: str
    """JSON member name."""
    target: str
    """Name of the member's shape in ``SHAPES``."""


@dataclass(frozen=True, slots=True)
class Shape:
    """One shape of the model with the constraints the server validates.

    ``type`` is the model type (structure, list, map, string, integer, long, boolean,
    double, float, timestamp, blob). ``min``/``max`` bound the length of strings, lists,
    maps and blobs and the value of numbers. ``pattern`` must match the whole string.
    """

    type: str
    members: tuple[Member, ...] = ()
    required: tuple[str, ...] = ()
    """Wire names of the required members."""
    member: str | None = None
    """Item shape of a list."""
    key: str | None = None
    """Key shape of a map."""
    value: str | None = None
    """Value shape of a map."""
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] = ()
    error: bool = False
    """True for the error shapes (their members are the extra fields of an error body)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One ECR operation: its input and output structure shapes and its modelled errors."""

    name: str
    input: str
    output: str
    errors: tuple[str, ...]
    """Error codes (error shape names), in model order."""

'''


INIT_DOC = '''"""The ECR wire models: one definition of each shape, for the server and the SDK.

Everything here is generated from botocore's ECR service model by
``tools/generate_models.py``; do not edit by hand.

* One ``msgspec.Struct`` per structure shape of the 41 operations, named as in the model
  (``CreateRepositoryRequest``, ``Repository``, ``ImageIdentifier``, ...). Attributes are
  snake_case, the wire names camelCase (``Tag`` keeps ``Key``/``Value``). Every field is
  optional and defaults to ``None``; encoding with ``msgspec.json.encode`` omits ``None``
  fields. Unknown fields and unknown enum values decode fine, so responses from newer
  servers never break a client.
* ``REQUEST_TYPES`` / ``RESPONSE_TYPES`` map each operation name to its structs; the
  operation names are the keys of ``OPERATIONS``.
* ``Literal`` aliases document the known values of each enum shape (fields stay ``str``).
* ``SHAPES`` and ``OPERATIONS`` describe every shape as data: requiredness, lengths,
  ranges, patterns, enum values, and each operation's errors. The server compiles them into
  its strict request validator (``openecr.ecr_api._validation``).
"""
'''


def render_init(model: Model) -> str:
    shape_names = sorted(
        [*model.structs(), *model.enums(), "REQUEST_TYPES", "RESPONSE_TYPES", "ResponseMetadata"]
    )
    catalog_names = [
        "API_VERSION",
        "MODEL_SHA256",
        "OPERATIONS",
        "SHAPES",
        "TARGET_PREFIX",
        "Member",
        "Operation",
        "Shape",
    ]
    out = [INIT_DOC, "\n"]
    out.append("from openecr.models._catalog import (\n")
    out.extend(f"    {n},\n" for n in _isort(catalog_names))
    out.append(")\n")
    out.append("from openecr.models._shapes import (\n")
    out.extend(f"    {n},\n" for n in _isort(shape_names))
    out.append(")\n\n")
    out.append("__all__ = [\n")
    names = _isort([*catalog_names, *shape_names], case_sensitive=True)
    out.extend(f'    "{n}",\n' for n in names)
    out.append("]\n")
    return "".join(out)


def _isort(names: list[str], *, case_sensitive: bool = False) -> list[str]:
    """Order by type (CONSTANTS, Classes, the rest), as ruff's isort and RUF022 want.

    Imported names sort case-insensitively, ``__all__`` entries case-sensitively.
    """

    def key(n: str) -> tuple[int, str, str]:
        group = 0 if n.isupper() else 1 if n[:1].isupper() else 2
        return (group, n if case_sensitive else n.lower(), n)

    return sorted(set(names), key=key)


def generate(out_dir: Path, source: Path | None = None) -> list[Path]:
    """Write the generated modules into ``out_dir``; return their paths."""
    model = Model(*load_model(source or model_path()))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "_shapes.py": render_shapes(model),
        "_catalog.py": render_catalog(model),
        "__init__.py": render_init(model),
    }
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


GENERATED_FILES: tuple[str, ...] = ("_shapes.py", "_catalog.py", "__init__.py")


def main(argv: list[str]) -> int:
    default = Path(__file__).resolve().parent.parent / "src" / "openecr" / "models"
    out_dir = Path(argv[1]) if len(argv) > 1 else default
    for path in generate(out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
