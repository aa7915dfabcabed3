"""Kustomizations rendered in Python, and manifests validated against the Kubernetes schemas.

No kustomize or kubectl binary is needed: `render` implements the subset of kustomize that
deploy/k8s and its overlays use (`resources`, `namespace`, `images`, and `patches` given by
`path` as strategic-merge patches) and refuses any other field, so an overlay cannot quietly use
something the tests do not render. CI (.github/workflows/ci.yml) also renders each overlay with
the real kustomize and compares: `python -m tests.support.kustomize DIR < kustomize-output.yaml`.

`validate` checks a manifest against the JSON schemas of one Kubernetes version shipped by the
kubernetes-validate package (strict: unknown fields are errors), loading each schema once.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate.utils import all_versions
from referencing import Registry, Resource

__all__ = ["UnsupportedKustomization", "render", "validate", "versions_available"]

Manifest = dict[str, Any]

_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
_SCHEMAS = Path(sys.modules["kubernetes_validate"].__file__ or "").parent / "kubernetes-json-schema"


class UnsupportedKustomization(ValueError):
    """A kustomization uses something `render` does not implement."""


def render(directory: Path) -> list[Manifest]:
    """The manifests `kustomize build directory` produces (for the supported subset)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _FIELDS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: {sorted(unknown)}")
    manifests: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            manifests.extend(render(path))
        else:
            manifests.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise UnsupportedKustomization(f"{directory}: patch {patch}")
        _apply_patch(manifests, yaml.safe_load((directory / patch["path"]).read_text()))
    namespace = kustomization.get("namespace")
    for manifest in manifests:
        if namespace and manifest["kind"] != "Namespace":
            manifest["metadata"]["namespace"] = namespace
        for image in kustomization.get("images", []):
            _set_image(manifest, image)
    return manifests


def _apply_patch(manifests: list[Manifest], patch: Manifest) -> None:
    key = (patch["kind"], patch["metadata"]["name"])
    targets = [i for i, m in enumerate(manifests) if (m["kind"], m["metadata"]["name"]) == key]
    if len(targets) != 1:
        raise UnsupportedKustomization(f"patch {key} matches {len(targets)} resources")
    manifests[targets[0]] = _merge(manifests[targets[0]], patch)


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge: maps merge key by key (null deletes), lists of named maps merge by
    name, any other list or value is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if _named_maps(base) and _named_maps(patch):
        by_name = {item["name"]: item for item in patch}
        merged_list = [_merge(item, by_name.pop(item["name"], {})) for item in base]
        return merged_list + [copy.deepcopy(item) for item in by_name.values()]
    return copy.deepcopy(patch)


def _named_maps(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _set_image(manifest: Manifest, image: dict[str, str]) -> None:
    pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def versions_available() -> set[str]:
    """The Kubernetes minor versions kubernetes-validate has schemas for, e.g. "1.35"."""
    return {".".join(version.split(".")[:2]) for version in all_versions()}


@functools.cache
def _definitions(version: str) -> Registry[Any]:
    contents = json.loads((_schema_dir(version) / "_definitions.json").read_text())
    return Resource.from_contents(contents) @ Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    group, _, group_version = api_version.rpartition("/")
    name = f"{kind.lower()}-{group.split('.')[0] + '-' if group else ''}{group_version}.json"
    schema = json.loads((_schema_dir(version) / name).read_text())
    registry = Resource.from_contents(schema) @ _definitions(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _schema_dir(version: str) -> Path:
    return _SCHEMAS / f"v{version}.0-local-strict"


def validate(manifest: Manifest, version: str) -> list[str]:
    """Every schema violation of `manifest` in Kubernetes `version` ("1.35"), as readable lines."""
    validator = _validator(version, manifest["kind"], manifest["apiVersion"])
    return [
        f"{manifest['kind']}/{manifest['metadata']['name']} "
        f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


def _canonical(manifests: list[Manifest]) -> list[Manifest]:
    return sorted(manifests, key=lambda m: (m["kind"], m["metadata"]["name"]))


def main(argv: list[str]) -> int:
    """Compare `render(DIR)` with the rendering of the real kustomize read from stdin."""
    (directory,) = argv
    theirs = _canonical([doc for doc in yaml.safe_load_all(sys.stdin) if doc])
    ours = _canonical(render(Path(directory)))
    if ours == theirs:
        print(f"{directory}: {len(ours)} resources, the same as kustomize's")
        return 0
    print(f"{directory}: differs from kustomize's rendering", file=sys.stderr)
    print(yaml.safe_dump_all(ours, sort_keys=True), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
